-- wrk script of bench/run.sh.  Environment:
--   BENCH_METHOD  GET | POST
--   BENCH_IDS     identities per POST body
--   BENCH_IDLEN   15: "%2B1555555dddd" (+1555555dddd, 12 bytes decoded,
--                 14 on the wire); otherwise identities of that many bytes
--   BENCH_FLOWS   requests rotate over this many Flow SIDs (the module
--                 lets one POST per flow be in flight: 409 otherwise)
-- Every request carries the client's own Authorization, which must not
-- reach the upstream (it answers 401 unless it sees the service one).
-- done() prints one WRKRESULT line; non-2xx/3xx answers are counted by wrk
-- in summary.errors.status and fail the run.

local method = os.getenv("BENCH_METHOD") or "GET"
local nids = tonumber(os.getenv("BENCH_IDS") or "0")
local idlen = tonumber(os.getenv("BENCH_IDLEN") or "15")
local nflows = tonumber(os.getenv("BENCH_FLOWS") or "1024")

local reqs = {}
local i = 0

local function identity(k)
    if idlen == 15 then
        return string.format("%%2B1555555%04d", k)
    end

    local s = string.format("u-%04d-", k)
    return s .. string.rep("x", idlen - #s)
end

function init(args)
    local body = nil
    local headers = {
        ["Host"] = "gateway.test",
        ["Authorization"] = "Basic Y2xpZW50OnRlYW0tc2VjcmV0",
    }

    if method == "POST" then
        local t = {}
        for k = 1, nids do
            t[k] = "TestUsers=" .. identity(k)
        end
        body = table.concat(t, "&")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    end

    for f = 1, nflows do
        local path = string.format("/v2/Flows/FW%032x/TestUsers", f)
        reqs[f] = wrk.format(method, path, headers, body)
    end
end

function request()
    i = i % nflows + 1
    return reqs[i]
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRKRESULT requests=%d duration_us=%d bytes=%d status_errors=%d "
        .. "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d "
        .. "p50_us=%d p99_us=%d max_us=%d\n",
        summary.requests, summary.duration, summary.bytes, e.status,
        e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(99), latency.max))
end
