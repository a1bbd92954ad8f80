/* The Lua scripts of the rate limiter and the concurrency slots.
 *
 * Time: every script reads Redis's clock once with TIME, as integer
 * microseconds (< 2^53, exact in Lua's doubles); replies are milliseconds,
 * rounded up so that waiting that long is always enough. Numbers reach
 * Redis as strings made with string.format (or, a log entry's time, joined
 * from TIME's own strings): '%d' for integers (all but the GCRA fraction,
 * '%.17g'); both exact, and '%d' is much cheaper than
 * letting redis.call() format a Lua number (%.17g through glibc's exact
 * printf: ~0.6 us per argument, measured). Never through tostring() or
 * `..`, whose %.14g would round. Strings Redis hands back (TIME, members,
 * hash fields) and ARGV become numbers by arithmetic (`s + 0`, `s * 1000`),
 * not tonumber(): Lua 5.1's tonumber() converts its argument twice
 * (lua_isnumber, then lua_tonumber: two strtod calls), and cost the log
 * check ~8% of its Redis time (measured); a malformed string fails the
 * script either way. tonumber() stays where nil is an answer (a missing
 * hash field).
 *
 * The rate check evaluates every rule first and writes only if all of them
 * admit the cost, so one script call is all or nothing.
 *
 * KEYS (rate): for rule i (1-based) KEYS[2i-1] is its hash
 *   `<prefix>:r:{<key>}:<i-1>` (every algorithm but the sliding log) and
 *   KEYS[2i] its log `...:<i-1>:l` (a sorted set, the sliding log's only
 *   key). All in the slot of {<key>}.
 * ARGV (rate): mode ('c' check, 'p' peek), cost, then one "algo window_ms
 *   utc_offset_min limit" per rule (window 0 for calendar rules, offset 0
 *   unless fixed or calendar).
 * A check (not a peek) of a single sliding-log rule goes to a script of
 *   its own (CK__LUA_RATE_LOG_ONE) running the same code.
 * Reply: {allowed, rule, limit, remaining, retry_after_ms, reset_after_ms}.
 *
 * A rule's hash: s = "algo window offset" (its signature: a rule whose
 * signature changed starts afresh; a limit change keeps the state), and
 *   sliding window  a = current bucket number, b = its count, c = previous
 *   GCRA            a, b = theoretical arrival time, integer us + fraction;
 *                   c = when the key expires (us), so the TTL is only
 *                   written when the arrival time passes it
 *   fixed/calendar  a = window start (us), b = count
 * The sliding log (see CK__LUA_RATE_LOG) keeps no hash: its entries are
 * events, and they stay valid when the rule's window or limit changes.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rate_internal.h"

/* The window of a fixed or calendar rule, as a block: from a (algorithm),
 * win, off and t (us) it sets s, e = [start, end) in UTC us. Calendar days
 * come from H. Hinnant's civil_from_days (proleptic Gregorian): Lua in Redis
 * has no os.date, and the offset is the caller's anyway. floor(x / y) is
 * exact here: for integers |x| < 2^53 the quotient's rounding error is
 * below 1/y, the distance from x / y to any other integer. Inlined rather
 * than a function: creating closures on every call costs Redis CPU. */
#define CK__LUA_BOUNDS \
    "local s, e\n" \
    "do\n" \
    "  local l = t + off\n" \
    "  if a == 3 then\n" \
    "    s = floor(l / win) * win - off\n" \
    "    e = s + win\n" \
    "  else\n" \
    "    local d = floor(l / DAY)\n" \
    "    if a == 4 then s, e = d, d + 1\n" \
    "    elseif a == 5 then\n" \
    "      s = d - (d + 3) % 7\n" \
    "      e = s + 7\n" \
    "    else\n" \
    "      local z = d + 719468\n" \
    "      local era = floor(z / 146097)\n" \
    "      local doe = z - era * 146097\n" \
    "      local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)\n" \
    "      local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))\n" \
    "      local mp = floor((5 * doy + 2) / 153)\n" \
    "      local dd = doy - floor((153 * mp + 2) / 5) + 1\n" \
    "      local m = mp < 10 and mp + 3 or mp - 9\n" \
    "      local y = yoe + era * 400\n" \
    "      if m <= 2 then y = y + 1 end\n" \
    "      local n = 31\n" \
    "      if m == 2 then\n" \
    "        n = 28\n" \
    "        if y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then n = 29 end\n" \
    "      elseif m == 4 or m == 6 or m == 9 or m == 11 then n = 30 end\n" \
    "      s = d - dd + 1\n" \
    "      e = s + n\n" \
    "    end\n" \
    "    s, e = s * DAY - off, e * DAY - off\n" \
    "  end\n" \
    "end\n"

/* now: Redis's clock, integer microseconds */
#define CK__LUA_NOW \
    "local tm = redis.call('TIME')\n" \
    "local now = tm[1] * 1000000 + tm[2]\n"

#define CK__LUA_PRELUDE \
    "local floor, ceil, fmt, find, sub = math.floor, math.ceil, string.format, string.find, string.sub\n" \
    "local DAY = 86400000000\n"

/* The sliding log is its sorted set alone: score = the entry's time
 * (strictly increasing), member = "<total>:<time>" where total is the
 * running total of the costs logged up to and including the entry (members
 * carry the time so that no read needs WITHSCORES, which costs Redis a
 * double-to-string conversion per score). The cost inside the window is the
 * newest total minus the total at the newest expired entry (the anchor,
 * which pruning keeps): two O(log n) reads, whatever the number of entries.
 * Pruning runs each time the total crosses a multiple of limit/8 + 1 (so at
 * most that many expired entries wait), and the TTL (two windows) is
 * renewed by the first entry of each window-long bucket: most checks write
 * only ZADD.
 * CK__LUA_LOG_RULE is a block, not a function, so that the one-rule script
 * runs it inline (creating the closure and its upvalues on every call cost
 * Redis more than the call saves): from lk, win, lim and the script's tm,
 * now, cost and charge it sets the caller's locals ok, rem, wait, reset
 * and, when ok, what CK__LUA_LOG_COMMIT writes: lt (the entry's time, a
 * string: TIME's own digits when it is now, as a concatenation costs Redis
 * less than string.format), lm (its member), lp (the anchor to prune to, or
 * false), lttl (ms, or false). */
#define CK__LUA_LOG_RULE \
    "do\n" \
    "  local t, tot, last, base, anchor = now, 0, 0, 0, false\n" \
    "  local nw = redis.call('ZRANGE', lk, '-1', '-1')[1]\n" \
    "  if nw then\n" \
    "    local j = find(nw, ':', 1, true)\n" \
    "    tot, last, anchor = sub(nw, 1, j - 1) + 0, sub(nw, j + 1) + 0, nw\n" \
    "  end\n" \
    "  if t <= last then t = last + 1 end\n" \
    "  local cut = t - win\n" \
    "  if tot > 0 then\n" \
    "    if last <= cut then base = tot\n" \
    "    else\n" \
    "      anchor = false\n" \
    "      local ex = redis.call('ZREVRANGEBYSCORE', lk, fmt('%d', cut), '-inf', 'LIMIT', '0', '1')[1]\n" \
    "      if ex then base, anchor = sub(ex, 1, find(ex, ':', 1, true) - 1) + 0, ex end\n" \
    "    end\n" \
    "  end\n" \
    "  local used = tot - base\n" \
    "  reset = 0\n" \
    "  if used > 0 then reset = last + win - t end\n" \
    "  ok = used + cost <= lim\n" \
    "  if ok then\n" \
    "    if charge > 0 then reset = win end\n" \
    /*   x - x % p: x rounded down to a multiple of p, with no call */ \
    "    local p = (lim - lim % 8) / 8 + 1\n" \
    "    local ts\n" \
    "    if t == now then\n" \
    "      ts = tm[2]\n" \
    "      if #ts < 6 then ts = sub('00000' .. ts, -6) end\n" \
    "      ts = tm[1] .. ts\n" \
    "    else ts = fmt('%d', t) end\n" \
    "    lt, lm, lp, lttl = ts, fmt('%d:', tot + cost) .. ts, false, false\n" \
    "    if anchor and (tot + cost) - (tot + cost) % p > tot - tot % p then lp = anchor end\n" \
    "    if tot == 0 or t - t % win ~= last - last % win then lttl = ceil(2 * win / 1000) + 1 end\n" \
    "    rem, wait = lim - used - charge, 0\n" \
    "  else\n" \
    "    wait = -1\n" \
    "    if cost <= lim then\n" \
    /*     the entry whose expiry frees enough: the oldest whose running
     *     total reaches base + used + cost - lim; totals grow with rank, so
     *     look at the oldest live entry, then bisect */ \
    "      local target = base + used + cost - lim\n" \
    "      local lo = redis.call('ZCOUNT', lk, '-inf', fmt('%d', cut))\n" \
    "      local e = redis.call('ZRANGE', lk, fmt('%d', lo), fmt('%d', lo))[1]\n" \
    "      if string.match(e, '^%d+') + 0 < target then\n" \
    "        local hi = redis.call('ZCARD', lk) - 1\n" \
    "        lo = lo + 1\n" \
    "        while lo < hi do\n" \
    "          local mid = floor((lo + hi) / 2)\n" \
    "          e = redis.call('ZRANGE', lk, fmt('%d', mid), fmt('%d', mid))[1]\n" \
    "          if string.match(e, '^%d+') + 0 >= target then hi = mid else lo = mid + 1 end\n" \
    "        end\n" \
    "        e = redis.call('ZRANGE', lk, fmt('%d', lo), fmt('%d', lo))[1]\n" \
    "      end\n" \
    "      wait = string.match(e, ':(%d+)$') + win - t\n" \
    "    end\n" \
    "    rem = lim - used\n" \
    "  end\n" \
    "  if rem < 0 then rem = 0 end\n" \
    "end\n"

#define CK__LUA_LOG_COMMIT \
    "if lp then redis.call('ZREMRANGEBYSCORE', lk, '-inf', '(' .. string.match(lp, ':(%d+)$')) end\n" \
    "redis.call('ZADD', lk, lt, lm)\n" \
    "if lttl then redis.call('PEXPIRE', lk, fmt('%d', lttl)) end\n"

/* The multi-rule script's view of the same: functions, called once per
 * sliding-log rule. */
#define CK__LUA_RATE_LOG \
    "local function log_rule(lk, win, lim)\n" \
    "local ok, rem, wait, reset, lt, lm, lp, lttl\n" \
    CK__LUA_LOG_RULE \
    "return ok, rem, wait, reset, lt, lm, lp, lttl\n" \
    "end\n" \
    "local function log_commit(lk, lt, lm, lp, lttl)\n" \
    CK__LUA_LOG_COMMIT \
    "end\n"

/* Replies are {allowed, rule, limit, remaining, retry_after_ms,
 * reset_after_ms}: a table of numbers costs Redis less than building the
 * same as a string with string.format (measured). */
#define CK__LUA_RATE_HEAD \
    "local mode, cost = ARGV[1], ARGV[2] + 0\n" \
    "local commit = mode == 'c' and cost > 0\n" \
    "local charge = 0\n" \
    "if mode == 'c' then charge = cost end\n" \
    CK__LUA_NOW \
    CK__LUA_RATE_LOG \
    "local ok_all, retry = true, 0\n" \
    "local rep, rep_lim, rep_rem, rep_reset = -1, 0, 0, 0\n" \
    "local todo = {}\n" \
    "for i = 1, #ARGV - 2 do\n" \
    "  local a, w, o, lim = string.match(ARGV[i + 2], '^(%d) (%d+) (%-?%d+) (%d+)$')\n" \
    "  if not a then return redis.error_reply('ERR cachekit: bad rule argument') end\n" \
    "  local sig = a .. ' ' .. w .. ' ' .. o\n" \
    "  a, lim = a + 0, lim + 0\n" \
    "  local win, off = w * 1000, o * 60000000\n" \
    "  local hk, lk = KEYS[2 * i - 1], KEYS[2 * i]\n" \
    "  local t = now\n" \
    "  local ok, rem, wait, reset, job, st, fresh\n" \
    "  if a == 0 then\n" \
    "    local lt, lm, lp, lttl\n" \
    "    ok, rem, wait, reset, lt, lm, lp, lttl = log_rule(lk, win, lim)\n" \
    "    if ok then job = {0, lk, lt, lm, lp, lttl, false} end\n" \
    "  else\n" \
    "    st = redis.call('HMGET', hk, 's', 'a', 'b', 'c')\n" \
    "    fresh = st[1] ~= sig\n" \
    "  end\n" \
    "  if a == 0 then -- done above\n"

/* The counters live in the rule's hash (see the top of this file). A TTL
 * is written only when it has to grow: at the first charge of a bucket or
 * window, or (GCRA) when the arrival time passes the expiry recorded in c. */
#define CK__LUA_RATE_COUNTERS \
    "  elseif a == 1 then\n" \
    /*   sliding window: previous bucket weighted by its overlap */ \
    "    local b = floor(t / win)\n" \
    "    local cur, prev, sb = 0, 0, false\n" \
    "    if not fresh then\n" \
    "      sb = st[2] + 0\n" \
    "      if sb >= b then b, cur, prev = sb, st[3] + 0, st[4] + 0\n" \
    "      elseif sb == b - 1 then prev = st[3] + 0 end\n" \
    "    end\n" \
    "    local el = t - b * win\n" \
    "    if el < 0 then el = 0 end\n" \
    "    local rest = win - el\n" \
    "    local carry = ceil(prev * rest / win)\n" \
    "    ok = prev * rest + (cur + cost) * win <= lim * win\n" \
    "    if ok then\n" \
    "      rem = lim - carry - cur - charge\n" \
    "      local ttl = false\n" \
    "      if sb ~= b then ttl = ceil(2 * win / 1000) + 1 end\n" \
    "      job = {1, hk, sig, b, fmt('%d', cur + cost), prev, ttl}\n" \
    "      cur = cur + charge\n" \
    "    else\n" \
    "      rem = lim - carry - cur\n" \
    "      if cost > lim then wait = -1\n" \
    "      elseif cur + cost <= lim then wait = ceil(win - (lim - cur - cost) * win / prev) - el\n" \
    "      else\n" \
    "        local e2 = 0\n" \
    "        if cur > 0 then e2 = ceil(win - (lim - cost) * win / cur) end\n" \
    "        wait = rest + e2\n" \
    "      end\n" \
    "    end\n" \
    "    if cur > 0 then reset = (b + 2) * win - t elseif prev > 0 then reset = rest else reset = 0 end\n" \
    "  elseif a == 2 then\n" \
    /*   GCRA: burst = lim, emission interval win / lim; c = the key's expiry (us) */ \
    "    local ta, tf, exp = t, 0, 0\n" \
    "    if not fresh then\n" \
    "      local sa = st[2] + 0\n" \
    "      if sa >= t then ta, tf = sa, st[3] + 0 end\n" \
    "      if st[4] then exp = st[4] + 0 end\n" \
    "    end\n" \
    "    local x = tf + cost * win / lim\n" \
    "    local ip = floor(x)\n" \
    "    local ahead0, ahead = ta - t + tf, ta - t + x\n" \
    "    ok = ahead <= win + win * 1e-9 + 1e-6\n" \
    "    local a2 = ahead0\n" \
    "    if ok then\n" \
    "      if charge > 0 then a2 = ahead end\n" \
    "      local ttl = false\n" \
    "      if ta + ip + 1 > exp then\n" \
    "        ttl = ceil((ta + ip + 1 - t + win) / 1000) + 1\n" \
    "        exp = t + (ttl - 1) * 1000\n" \
    "      end\n" \
    "      job = {1, hk, sig, ta + ip, fmt('%.17g', x - ip), exp, ttl}\n" \
    "    elseif cost > lim then wait = -1\n" \
    "    else wait = ceil(ahead - win) end\n" \
    "    rem = floor((win - a2) * lim / win + 1e-6)\n" \
    "    reset = 0\n" \
    "    if a2 > 0 then reset = ceil(a2) end\n" \
    "  else\n" \
    /*   fixed and calendar windows */ \
    CK__LUA_BOUNDS \
    "    local n, ws = 0, false\n" \
    "    if not fresh then ws = st[2] + 0 end\n" \
    "    if ws == s then n = st[3] + 0 end\n" \
    "    ok = n + cost <= lim\n" \
    "    if ok then\n" \
    "      local ttl = false\n" \
    "      if ws ~= s then ttl = ceil((e - t) / 1000) + 1 end\n" \
    "      job = {1, hk, sig, s, fmt('%d', n + cost), false, ttl}\n" \
    "      n = n + charge\n" \
    "    elseif cost > lim then wait = -1\n" \
    "    else wait = e - t end\n" \
    "    rem = lim - n\n" \
    "    reset = 0\n" \
    "    if n > 0 then reset = e - t end\n" \
    "  end\n" \
    "  if rem < 0 then rem = 0 end\n"

#define CK__LUA_RATE_TAIL \
    "  if ok then\n" \
    "    todo[#todo + 1] = job\n" \
    "    if ok_all and (rep < 0 or rem < rep_rem) then rep, rep_lim, rep_rem, rep_reset = i - 1, lim, rem, reset end\n" \
    "  else\n" \
    "    if ok_all then ok_all, rep, rep_lim, rep_rem, rep_reset = false, i - 1, lim, rem, reset end\n" \
    "    if wait < 0 or retry < 0 then retry = -1 elseif wait > retry then retry = wait end\n" \
    "  end\n" \
    "end\n" \
    "if ok_all and commit then\n" \
    "  for j = 1, #todo do\n" \
    "    local k, key, x3, x4, x5, x6, x7 = unpack(todo[j], 1, 7)\n" \
    "    if k == 0 then log_commit(key, x3, x4, x5, x6)\n" \
    "    else\n" \
    "      if x6 then redis.call('HSET', key, 's', x3, 'a', fmt('%d', x4), 'b', x5, 'c', fmt('%d', x6))\n" \
    "      else redis.call('HSET', key, 's', x3, 'a', fmt('%d', x4), 'b', x5) end\n" \
    "      if x7 then redis.call('PEXPIRE', key, fmt('%d', x7)) end\n" \
    "    end\n" \
    "  end\n" \
    "end\n" \
    "local rms = 0\n" \
    "if retry < 0 then rms = -1 elseif retry > 0 then rms = ceil(retry / 1000) end\n" \
    "if ok_all then rep = -1 end\n" \
    "return {ok_all and 1 or 0, rep, rep_lim, rep_rem, rms, ceil(rep_reset / 1000)}\n"

/* The check of one sliding-log rule, the most common and the most
 * expensive check, without the multi-rule machinery. KEYS = {log},
 * ARGV = {cost, window_ms, limit}. An admitted charge replies remaining
 * alone, an integer: the caller knows the rest (rule -1, limit, no wait,
 * reset = the window), and a six-element reply cost Redis and the client
 * more than any other part of the check but the reads. Anything else
 * replies as the multi-rule script does. */
#define CK__LUA_RATE_LOG_ONE \
    "local cost = ARGV[1] + 0\n" \
    "local charge = cost\n" \
    CK__LUA_NOW \
    "local lk, win, lim = KEYS[1], ARGV[2] * 1000, ARGV[3] + 0\n" \
    "local ok, rem, wait, reset, lt, lm, lp, lttl\n" \
    CK__LUA_LOG_RULE \
    "if not ok then\n" \
    "  if wait > 0 then wait = ceil(wait / 1000) end\n" \
    "  return {0, 0, lim, rem, wait, ceil(reset / 1000)}\n" \
    "end\n" \
    "if cost == 0 then return {1, -1, lim, rem, 0, ceil(reset / 1000)} end\n" \
    CK__LUA_LOG_COMMIT \
    "return rem\n"

const char ck__rate_lua_bounds[] = CK__LUA_PRELUDE CK__LUA_BOUNDS;

/* The rate scripts are longer than the 4095 bytes a C string literal may
 * portably have, so they are assembled once from their parts. */
static const char *const ck__rate_parts[] = {
    CK__LUA_PRELUDE, CK__LUA_RATE_HEAD, CK__LUA_RATE_COUNTERS, CK__LUA_RATE_TAIL, NULL,
};
static const char *const ck__rate_log_parts[] = {
    CK__LUA_PRELUDE, CK__LUA_RATE_LOG_ONE, NULL,
};
#define CK__RATE_SRC_MAX 16384
static char ck__rate_check_src[CK__RATE_SRC_MAX];
static char ck__rate_peek_src[CK__RATE_SRC_MAX];
static char ck__rate_log_src[CK__RATE_SRC_MAX];
static pthread_once_t ck__rate_once = PTHREAD_ONCE_INIT;

ck__script ck__rate_check_script = {"rate_check", NULL, {0}};
ck__script ck__rate_peek_script = {"rate_peek", NULL, {0}};
ck__script ck__rate_log_script = {"rate_log", NULL, {0}};

static void ck__rate_assemble(char *dst, const char *shebang, const char *const *parts)
{
    size_t n = strlen(shebang);

    memcpy(dst, shebang, n);
    for (; *parts != NULL; parts++) {
        size_t m = strlen(*parts);

        if (n + m >= CK__RATE_SRC_MAX)
            abort(); /* a build-time constant: caught by every test run */
        memcpy(dst + n, *parts, m);
        n += m;
    }
    dst[n] = '\0';
}

static void ck__rate_scripts_once(void)
{
    ck__rate_assemble(ck__rate_check_src, "#!lua\n", ck__rate_parts);
    ck__rate_assemble(ck__rate_peek_src, "#!lua flags=no-writes\n", ck__rate_parts);
    ck__rate_assemble(ck__rate_log_src, "#!lua\n", ck__rate_log_parts);
    ck__rate_check_script.src = ck__rate_check_src;
    ck__rate_peek_script.src = ck__rate_peek_src;
    ck__rate_log_script.src = ck__rate_log_src;
}

void ck__rate_scripts_init(void)
{
    pthread_once(&ck__rate_once, ck__rate_scripts_once);
}

/* Concurrency slots. KEYS[1] `<prefix>:r:{<key>}:slots`: sorted set holder ->
 * expiry (us); KEYS[2] `...:slots:h`: hash holder -> stale_ms (what a touch
 * extends by). Holders past their expiry are pruned first, by TIME.
 * ARGV: op ('a' acquire, 't' touch, 'r' release), holder, [max, stale_ms].
 * Acquire replies {allowed, free slots after, retry_after_ms,
 * reset_after_ms}; touch and release reply 1 (done) or 0 (no live slot).
 * Both keys expire with the last holder's expiry. */
ck__script ck__slots_script = {
    "slots",
    "#!lua\n"
    "local z, h = KEYS[1], KEYS[2]\n"
    "local op, who = ARGV[1], ARGV[2]\n"
    "local tm = redis.call('TIME')\n"
    "local now = tm[1] * 1000000 + tm[2]\n"
    "local nows = string.format('%d', now)\n"
    "local gone = redis.call('ZRANGEBYSCORE', z, '-inf', nows)\n"
    "if #gone > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', z, '-inf', nows)\n"
    "  for i = 1, #gone, 1000 do redis.call('HDEL', h, unpack(gone, i, math.min(i + 999, #gone))) end\n"
    "end\n"
    "local function keep()\n"
    "  local last = redis.call('ZRANGE', z, '-1', '-1', 'WITHSCORES')\n"
    "  if last[2] then\n"
    "    local ttl = string.format('%d', math.ceil((last[2] - now) / 1000) + 1)\n"
    "    redis.call('PEXPIRE', z, ttl)\n"
    "    redis.call('PEXPIRE', h, ttl)\n"
    "  end\n"
    "end\n"
    "if op == 'a' then\n"
    "  local max, stale = ARGV[3] + 0, ARGV[4] + 0\n"
    "  local held = redis.call('ZSCORE', z, who)\n"
    "  local n = redis.call('ZCARD', z)\n"
    "  if held or n < max then\n"
    "    redis.call('ZADD', z, string.format('%d', now + stale * 1000), who)\n"
    "    redis.call('HSET', h, who, ARGV[4])\n"
    "    if not held then n = n + 1 end\n"
    "    keep()\n"
    "    local left = max - n\n"
    "    if left < 0 then left = 0 end\n"
    "    return {1, left, 0, stale}\n"
    "  end\n"
    "  local o = redis.call('ZRANGE', z, '0', '0', 'WITHSCORES')\n"
    "  local w = math.ceil((o[2] - now) / 1000)\n"
    "  return {0, 0, w, w}\n"
    "elseif op == 't' then\n"
    "  local stale = tonumber(redis.call('HGET', h, who))\n"
    "  if not stale or not redis.call('ZSCORE', z, who) then return 0 end\n"
    "  redis.call('ZADD', z, 'XX', string.format('%d', now + stale * 1000), who)\n"
    "  keep()\n"
    "  return 1\n"
    "end\n"
    "local r = redis.call('ZREM', z, who)\n"
    "redis.call('HDEL', h, who)\n"
    "return r\n",
    {0},
};
