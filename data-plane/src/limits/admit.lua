-- GCRA over several limits in one step: every limit admits the request and
-- is charged, or none is charged. Mirrors gcra.rs.
--
-- KEYS[i]: the TAT of limit i, microseconds since EPOCH as a decimal.
-- ARGV[2i-1], ARGV[2i]: limit i's cost and window, in microseconds.
-- Returns {retry, index, debt_1, ..., debt_n}: the wait of the limit that
-- needs the longest (0 and 0 when admitted), and each limit's debt after
-- the decision, all in whole microseconds rounded up.

-- Redis before 5 replicates scripts verbatim unless told otherwise, which
-- TIME would break; later versions always replicate effects.
if redis.replicate_commands then
    redis.replicate_commands()
end

-- Counting from 2023-11-14 keeps the numbers small enough for a double to
-- hold a fraction of a microsecond.
local EPOCH = 1700000000
local EPSILON = 1.0

local time = redis.call('TIME')
local now = (tonumber(time[1]) - EPOCH) * 1000000 + tonumber(time[2])

local debts = {}
local retry, index = EPSILON, 0
for i = 1, #KEYS do
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
    local debt = math.max(tat - now, 0)
    debts[i] = debt
    local need = debt + tonumber(ARGV[2 * i - 1]) - tonumber(ARGV[2 * i])
    if need > retry then
        retry, index = need, i
    end
end

if index == 0 then
    retry = 0
    for i = 1, #KEYS do
        local cost = tonumber(ARGV[2 * i - 1])
        if cost > 0 then
            local debt = debts[i] + cost
            debts[i] = debt
            -- The key goes when its TAT passes: a missing key is a full bucket.
            redis.call('SET', KEYS[i], string.format('%.17g', now + debt),
                'PX', math.ceil(debt / 1000) + 1)
        end
    end
end

local reply = {math.ceil(retry), index}
for i = 1, #KEYS do
    reply[i + 2] = math.ceil(debts[i])
end
return reply
