//! The fleet-wide rate limit: a GCRA (generic cell rate algorithm) run inside the server, so
//! a request costs one round trip and replicas never race. It keeps the local bucket's rules
//! (`thoth_ingest::RateLimiter`): one second's worth of burst, a batch larger than that passes
//! on a full bucket and leaves a debt, a refusal says in how many whole seconds to retry.

/// What the fleet-wide bucket answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateAnswer {
    Allowed,
    /// Retry in this many seconds (at least 1).
    Wait(u64),
}

/// `KEYS[1]`: the bucket; `ARGV[1]`: events per second; `ARGV[2]`: events asked for.
/// The bucket is its theoretical arrival time in microseconds of the server's clock (`TIME`,
/// so replicas' clocks do not matter); it expires once it would be full again.
pub(crate) const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local interval = 1000000 / rate
local burst = 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local need = math.min(n, rate) * interval
if tat - now > burst - need then
  local wait = (tat - now - (burst - need)) / 1000000
  return math.max(1, math.ceil(wait))
end
tat = tat + n * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 0
"#;

/// The script's answer: 0 allowed, else seconds to wait.
pub(crate) fn answer(reply: u64) -> RateAnswer {
    match reply {
        0 => RateAnswer::Allowed,
        s => RateAnswer::Wait(s),
    }
}
