#!/usr/bin/env bash
# Run check suites as a Redis ACL user allowed exactly the commands of
# tests/acl-commands (make check-acl): run-with-redis.sh in its ACL mode.
# The tests' own setup (FLUSHALL, DEBUG, CONFIG, CLIENT KILL ...) goes
# through CACHEKIT_TEST_REDIS_ADMIN_URL, the unrestricted default user.
#   tests/run-acl.sh BIN...
export CACHEKIT_TEST_ACL=1
exec "$(dirname "$0")/run-with-redis.sh" "$@"
