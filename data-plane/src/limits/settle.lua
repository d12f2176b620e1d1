-- Moves token limits' TATs once a request's real token count is known: a
-- debit when it used more than was reserved, a refund when less. A refund
-- never leaves more than a full bucket.
--
-- KEYS[i]: the TAT of limit i (as in admit.lua).
-- ARGV[i]: the change for limit i, in microseconds (negative to refund).

if redis.replicate_commands then
    redis.replicate_commands()
end

local EPOCH = 1700000000

local time = redis.call('TIME')
local now = (tonumber(time[1]) - EPOCH) * 1000000 + tonumber(time[2])

for i = 1, #KEYS do
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
    local moved = math.max(tat, now) + tonumber(ARGV[i])
    if moved > now then
        redis.call('SET', KEYS[i], string.format('%.17g', moved),
            'PX', math.ceil((moved - now) / 1000) + 1)
    else
        redis.call('DEL', KEYS[i])
    end
end
return #KEYS
