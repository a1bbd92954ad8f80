/* The Lua scripts of the rate limiter and the concurrency slots.
 *
 * Time: every script reads Redis's clock once with TIME, as integer
 * microseconds (< 2^53, exact in Lua's doubles); replies are milliseconds,
 * rounded up so that waiting that long is always enough. Numbers are written
 * to Redis only as redis.call() arguments, which Redis formats with %.17g
 * (exact), never through tostring() or `..` (%.14g, which would round).
 *
 * The rate check evaluates every rule first and writes only if all of them
 * admit the cost, so one script call is all or nothing.
 *
 * KEYS (rate): for rule i (1-based) KEYS[2i-1] is its hash
 *   `<prefix>:r:{<key>}:<i-1>` and KEYS[2i] its log `...:<i-1>:l` (a sorted
 *   set, used by the sliding log only). All in the slot of {<key>}.
 * ARGV (rate): mode ('c' check, 'p' peek), cost, then one "algo window_ms
 *   utc_offset_min limit" per rule (window 0 for calendar rules).
 * Reply: {allowed, rule, limit, remaining, retry_after_ms, reset_after_ms}.
 *
 * A rule's hash: s = "algo window offset" (its signature: a rule whose
 * signature changed starts afresh), a, b, c = the algorithm's state:
 *   sliding log     a = total cost ever logged (each log entry's member is
 *                   the running total up to and including it, its score the
 *                   time), b = that total at the newest expired entry (so the
 *                   cost in the window is a - b without reading the log),
 *                   c = time of the newest entry (times strictly increase)
 *   sliding window  a = current bucket number, b = its count, c = previous
 *   GCRA            a, b = theoretical arrival time, integer us + fraction
 *   fixed/calendar  a = window start (us), b = count
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rate_internal.h"

/* The window arithmetic: fdiv, civil (days since 1970-01-01 -> y, m, d;
 * H. Hinnant's civil_from_days, proleptic Gregorian) and bounds. Lua in
 * Redis has no os.date, and the offset is the caller's anyway. */
#define CK__LUA_BOUNDS \
    "local floor, ceil = math.floor, math.ceil\n" \
    "local DAY = 86400000000\n" \
    "local MDAYS = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}\n" \
    "local function fdiv(a, b)\n" \
    "  local q = floor(a / b)\n" \
    "  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end\n" \
    "  return q\n" \
    "end\n" \
    "local function civil(z)\n" \
    "  z = z + 719468\n" \
    "  local era = floor(z / 146097)\n" \
    "  local doe = z - era * 146097\n" \
    "  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)\n" \
    "  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))\n" \
    "  local mp = floor((5 * doy + 2) / 153)\n" \
    "  local d = doy - floor((153 * mp + 2) / 5) + 1\n" \
    "  local m = mp < 10 and mp + 3 or mp - 9\n" \
    "  local y = yoe + era * 400\n" \
    "  if m <= 2 then y = y + 1 end\n" \
    "  return y, m, d\n" \
    "end\n" \
    "local function bounds(algo, win, off, t)\n" \
    "  local l = t + off\n" \
    "  if algo == 3 then\n" \
    "    local s = fdiv(l, win) * win - off\n" \
    "    return s, s + win\n" \
    "  end\n" \
    "  local d = fdiv(l, DAY)\n" \
    "  if algo == 4 then return d * DAY - off, (d + 1) * DAY - off end\n" \
    "  if algo == 5 then\n" \
    "    local s = d - (d + 3) % 7\n" \
    "    return s * DAY - off, (s + 7) * DAY - off\n" \
    "  end\n" \
    "  local y, m, dd = civil(d)\n" \
    "  local n = MDAYS[m]\n" \
    "  if m == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then n = 29 end\n" \
    "  local s = d - dd + 1\n" \
    "  return s * DAY - off, (s + n) * DAY - off\n" \
    "end\n"

#define CK__LUA_RATE_HEAD \
    "local mode, cost = ARGV[1], tonumber(ARGV[2])\n" \
    "local commit = mode == 'c' and cost > 0\n" \
    "local charge = 0\n" \
    "if mode == 'c' then charge = cost end\n" \
    "local tm = redis.call('TIME')\n" \
    "local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])\n" \
    "local ok_all, retry = true, 0\n" \
    "local rep, rep_lim, rep_rem, rep_reset = -1, 0, 0, 0\n" \
    "local todo = {}\n" \
    "for i = 1, #ARGV - 2 do\n" \
    "  local a, w, o, lim = string.match(ARGV[i + 2], '^(%d) (%d+) (%-?%d+) (%d+)$')\n" \
    "  if not a then return redis.error_reply('ERR cachekit: bad rule argument') end\n" \
    "  local sig = a .. ' ' .. w .. ' ' .. o\n" \
    "  a, lim = tonumber(a), tonumber(lim)\n" \
    "  local win, off = tonumber(w) * 1000, tonumber(o) * 60000000\n" \
    "  local hk, lk = KEYS[2 * i - 1], KEYS[2 * i]\n" \
    "  local st = redis.call('HMGET', hk, 's', 'a', 'b', 'c')\n" \
    "  local fresh = st[1] ~= sig\n" \
    "  local t = now\n" \
    "  local ok, rem, wait, reset, job\n" \
    "  if a == 0 then\n"

#define CK__LUA_RATE_LOG \
    /*   sliding log */ \
    "    local tot, base, last, nb, newest = 0, 0, 0, 0, 0\n" \
    "    if not fresh then tot, base, last = tonumber(st[2]), tonumber(st[3]), tonumber(st[4]) end\n" \
    "    if t <= last then t = last + 1 end\n" \
    "    local cut = t - win\n" \
    "    nb = base\n" \
    "    if tot > base then\n" \
    "      local nw = redis.call('ZRANGE', lk, -1, -1, 'WITHSCORES')\n" \
    "      if nw[1] and tonumber(nw[1]) == tot then\n" \
    "        newest = tonumber(nw[2])\n" \
    "        local ex = redis.call('ZREVRANGEBYSCORE', lk, cut, '-inf', 'LIMIT', 0, 1)\n" \
    "        if ex[1] then nb = tonumber(ex[1]) end\n" \
    "      else\n" \
    "        fresh, tot, base, nb = true, 0, 0, 0\n" \
    "      end\n" \
    "    end\n" \
    "    local used = tot - nb\n" \
    "    ok = used + cost <= lim\n" \
    "    reset = 0\n" \
    "    if used > 0 then reset = newest + win - t end\n" \
    "    if ok then\n" \
    "      rem = lim - used - charge\n" \
    "      if charge > 0 then reset = win end\n" \
    "      job = {0, hk, sig, lk, fresh, nb > base, cut, t, tot + cost, nb, win}\n" \
    "    else\n" \
    "      rem = lim - used\n" \
    "      if cost > lim then wait = -1 else\n" \
    /*       the entry whose expiry frees enough: the oldest whose running
     *       total reaches nb + used + cost - lim; totals grow with rank, so
     *       look at the oldest live entry, then bisect */ \
    "        local target = nb + used + cost - lim\n" \
    "        local lo = redis.call('ZCOUNT', lk, '-inf', cut)\n" \
    "        local e = redis.call('ZRANGE', lk, lo, lo, 'WITHSCORES')\n" \
    "        if tonumber(e[1]) < target then\n" \
    "          local hi = redis.call('ZCARD', lk) - 1\n" \
    "          lo = lo + 1\n" \
    "          while lo < hi do\n" \
    "            local mid = floor((lo + hi) / 2)\n" \
    "            if tonumber(redis.call('ZRANGE', lk, mid, mid)[1]) >= target then hi = mid else lo = mid + 1 end\n" \
    "          end\n" \
    "          e = redis.call('ZRANGE', lk, lo, lo, 'WITHSCORES')\n" \
    "        end\n" \
    "        wait = tonumber(e[2]) + win - t\n" \
    "      end\n" \
    "    end\n"

#define CK__LUA_RATE_COUNTERS \
    "  elseif a == 1 then\n" \
    /*   sliding window: previous bucket weighted by its overlap */ \
    "    local b = fdiv(t, win)\n" \
    "    local cur, prev = 0, 0\n" \
    "    if not fresh then\n" \
    "      local sb = tonumber(st[2])\n" \
    "      if sb >= b then b, cur, prev = sb, tonumber(st[3]), tonumber(st[4])\n" \
    "      elseif sb == b - 1 then prev = tonumber(st[3]) end\n" \
    "    end\n" \
    "    local el = t - b * win\n" \
    "    if el < 0 then el = 0 end\n" \
    "    local rest = win - el\n" \
    "    local carry = ceil(prev * rest / win)\n" \
    "    ok = prev * rest + (cur + cost) * win <= lim * win\n" \
    "    if ok then\n" \
    "      rem = lim - carry - cur - charge\n" \
    "      cur = cur + charge\n" \
    "      job = {1, hk, sig, b, cur + cost - charge, prev, win}\n" \
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
    /*   GCRA: burst = lim, emission interval win / lim */ \
    "    local ta, tf = t, 0\n" \
    "    if not fresh then\n" \
    "      local sa = tonumber(st[2])\n" \
    "      if sa >= t then ta, tf = sa, tonumber(st[3]) end\n" \
    "    end\n" \
    "    local x = tf + cost * win / lim\n" \
    "    local ip = floor(x)\n" \
    "    local ahead0, ahead = ta - t + tf, ta - t + x\n" \
    "    ok = ahead <= win + win * 1e-9 + 1e-6\n" \
    "    local a2 = ahead0\n" \
    "    if ok then\n" \
    "      if charge > 0 then a2 = ahead end\n" \
    "      job = {2, hk, sig, ta + ip, x - ip, ahead}\n" \
    "    elseif cost > lim then wait = -1\n" \
    "    else wait = ceil(ahead - win) end\n" \
    "    rem = floor((win - a2) * lim / win + 1e-6)\n" \
    "    reset = 0\n" \
    "    if a2 > 0 then reset = ceil(a2) end\n" \
    "  else\n" \
    /*   fixed and calendar windows */ \
    "    local s, e = bounds(a, win, off, t)\n" \
    "    local n = 0\n" \
    "    if not fresh and tonumber(st[2]) == s then n = tonumber(st[3]) end\n" \
    "    ok = n + cost <= lim\n" \
    "    if ok then\n" \
    "      n = n + charge\n" \
    "      job = {3, hk, sig, s, n + cost - charge, e - t}\n" \
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
    "    local b = todo[j]\n" \
    "    local k, hk, sig = b[1], b[2], b[3]\n" \
    "    if k == 0 then\n" \
    "      local lk = b[4]\n" \
    "      if b[5] then redis.call('DEL', lk) elseif b[6] then redis.call('ZREMRANGEBYSCORE', lk, '-inf', b[7]) end\n" \
    "      redis.call('ZADD', lk, b[8], b[9])\n" \
    "      redis.call('HSET', hk, 's', sig, 'a', b[9], 'b', b[10], 'c', b[8])\n" \
    "      redis.call('PEXPIRE', lk, ceil(b[11] / 1000) + 1)\n" \
    "      redis.call('PEXPIRE', hk, ceil(b[11] / 1000) + 1)\n" \
    "    elseif k == 1 then\n" \
    "      redis.call('HSET', hk, 's', sig, 'a', b[4], 'b', b[5], 'c', b[6])\n" \
    "      redis.call('PEXPIRE', hk, ceil(2 * b[7] / 1000) + 1)\n" \
    "    elseif k == 2 then\n" \
    "      redis.call('HSET', hk, 's', sig, 'a', b[4], 'b', b[5])\n" \
    "      redis.call('PEXPIRE', hk, ceil(b[6] / 1000) + 1)\n" \
    "    else\n" \
    "      redis.call('HSET', hk, 's', sig, 'a', b[4], 'b', b[5])\n" \
    "      redis.call('PEXPIRE', hk, ceil(b[6] / 1000) + 1)\n" \
    "    end\n" \
    "  end\n" \
    "end\n" \
    "local rms = 0\n" \
    "if retry < 0 then rms = -1 elseif retry > 0 then rms = ceil(retry / 1000) end\n" \
    "if ok_all then rep = -1 end\n" \
    "return {ok_all and 1 or 0, rep, rep_lim, rep_rem, rms, ceil(rep_reset / 1000)}\n"

const char ck__rate_lua_bounds[] = CK__LUA_BOUNDS;

/* The two rate scripts are longer than the 4095 bytes a C string literal may
 * portably have, so they are assembled once from their parts. */
static const char *const ck__rate_parts[] = {
    CK__LUA_BOUNDS, CK__LUA_RATE_HEAD, CK__LUA_RATE_LOG, CK__LUA_RATE_COUNTERS, CK__LUA_RATE_TAIL,
};
#define CK__RATE_SRC_MAX 8192
static char ck__rate_check_src[CK__RATE_SRC_MAX];
static char ck__rate_peek_src[CK__RATE_SRC_MAX];
static pthread_once_t ck__rate_once = PTHREAD_ONCE_INIT;

ck__script ck__rate_check_script = {"rate_check", NULL, {0}};
ck__script ck__rate_peek_script = {"rate_peek", NULL, {0}};

static void ck__rate_assemble(char *dst, const char *shebang)
{
    size_t n = strlen(shebang);

    memcpy(dst, shebang, n);
    for (size_t i = 0; i < sizeof ck__rate_parts / sizeof ck__rate_parts[0]; i++) {
        size_t m = strlen(ck__rate_parts[i]);

        if (n + m >= CK__RATE_SRC_MAX)
            abort(); /* a build-time constant: caught by every test run */
        memcpy(dst + n, ck__rate_parts[i], m);
        n += m;
    }
    dst[n] = '\0';
}

static void ck__rate_scripts_once(void)
{
    ck__rate_assemble(ck__rate_check_src, "#!lua\n");
    ck__rate_assemble(ck__rate_peek_src, "#!lua flags=no-writes\n");
    ck__rate_check_script.src = ck__rate_check_src;
    ck__rate_peek_script.src = ck__rate_peek_src;
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
    "local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])\n"
    "local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)\n"
    "if #gone > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)\n"
    "  for i = 1, #gone, 1000 do redis.call('HDEL', h, unpack(gone, i, math.min(i + 999, #gone))) end\n"
    "end\n"
    "local function keep()\n"
    "  local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')\n"
    "  if last[2] then\n"
    "    local ttl = math.ceil((tonumber(last[2]) - now) / 1000) + 1\n"
    "    redis.call('PEXPIRE', z, ttl)\n"
    "    redis.call('PEXPIRE', h, ttl)\n"
    "  end\n"
    "end\n"
    "if op == 'a' then\n"
    "  local max, stale = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "  local held = redis.call('ZSCORE', z, who)\n"
    "  local n = redis.call('ZCARD', z)\n"
    "  if held or n < max then\n"
    "    redis.call('ZADD', z, now + stale * 1000, who)\n"
    "    redis.call('HSET', h, who, stale)\n"
    "    if not held then n = n + 1 end\n"
    "    keep()\n"
    "    local left = max - n\n"
    "    if left < 0 then left = 0 end\n"
    "    return {1, left, 0, stale}\n"
    "  end\n"
    "  local o = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')\n"
    "  local w = math.ceil((tonumber(o[2]) - now) / 1000)\n"
    "  return {0, 0, w, w}\n"
    "elseif op == 't' then\n"
    "  local stale = tonumber(redis.call('HGET', h, who))\n"
    "  if not stale or not redis.call('ZSCORE', z, who) then return 0 end\n"
    "  redis.call('ZADD', z, 'XX', now + stale * 1000, who)\n"
    "  keep()\n"
    "  return 1\n"
    "end\n"
    "local r = redis.call('ZREM', z, who)\n"
    "redis.call('HDEL', h, who)\n"
    "return r\n",
    {0},
};
