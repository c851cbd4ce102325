-- wrk script for `make soak`: one request per call, chosen from a weighted
-- mix of valid and invalid Test Users requests in every body shape.  Every
-- request names its kind in X-Soak-Kind, which the gateway's access log
-- records, so soak/analyze.pl can check each answer against what the kind
-- expects (%expect there).  Statuses seen by wrk are written by done() to
-- the file named by SOAK_WRK_STATS.

local BASIC_CLIENT = "Basic Y2xpZW50OnNlY3JldA=="   -- client:secret, must be dropped

local thread_seq = 0
local threads = {}

function setup(thread)
   thread_seq = thread_seq + 1
   thread:set("tid", thread_seq)
   table.insert(threads, thread)
end

local counter = 0
statuses = {}   -- global: done() reads it with thread:get
local hot = {
   "FW00000000000000000000000000000001",
   "FW00000000000000000000000000000002",
   "FW00000000000000000000000000000003",
   "FW00000000000000000000000000000004",
}

function init(args)
   math.randomseed(os.time() * 1000 + (tid or 0))
end

-- a flow sid never used by any other request of this run
local function new_flow()
   counter = counter + 1
   return string.format("FW%02x%06x%08x%016x", tid or 0, 0xabcdef, 0, counter)
end

local function path(sid)
   return "/v2/Flows/" .. sid .. "/TestUsers"
end

local function esc(s)
   return (s:gsub("[^A-Za-z0-9%-%._~]", function(c)
      return string.format("%%%02X", string.byte(c))
   end))
end

-- n distinct identities, of a few kinds and lengths; long = near 300 bytes
local function identities(n, long)
   local ids = {}
   local base = math.random(0, 999999)
   for i = 1, n do
      local k = math.random(1, 4)
      local v
      if long then
         v = "client:" .. string.rep("x", math.random(200, 280)) .. i
      elseif k == 1 then
         v = string.format("+1555%07d", (base + i) % 10000000)
      elseif k == 2 then
         v = "client:user" .. base .. "_" .. i
      elseif k == 3 then
         v = string.format("whatsapp:+4420%07d", (base + i) % 10000000)
      else
         v = "client:caf\195\169 " .. base .. "-" .. i   -- UTF-8 and a space
      end
      ids[i] = v
   end
   return ids
end

local function form(ids)
   local parts = {}
   for i, v in ipairs(ids) do
      parts[i] = "TestUsers=" .. esc(v)
   end
   return table.concat(parts, "&")
end

local function json(ids)
   local parts = {}
   for i, v in ipairs(ids) do
      parts[i] = '"' .. v:gsub('["\\]', "\\%0") .. '"'
   end
   return '{"TestUsers": [' .. table.concat(parts, ", ") .. "]}"
end

-- the body as random chunks, sometimes one byte long
local function chunked(body)
   local out = {}
   local pos = 1
   while pos <= #body do
      local n = math.random(1, 3) == 1 and math.random(1, 7)
                or math.random(1, 2048)
      local piece = body:sub(pos, pos + n - 1)
      out[#out + 1] = string.format("%x\r\n%s\r\n", #piece, piece)
      pos = pos + n
   end
   out[#out + 1] = "0\r\n\r\n"
   return table.concat(out)
end

local FORM = "application/x-www-form-urlencoded"

-- method, target, kind, headers (list), body, how ("cl", "chunked", nil)
local function req(method, target, kind, headers, body, how)
   local h = { method .. " " .. target .. " HTTP/1.1", "Host: localhost",
               "X-Soak-Kind: " .. kind }
   if math.random(1, 4) == 1 then
      h[#h + 1] = "Authorization: " .. BASIC_CLIENT
   end
   for _, v in ipairs(headers or {}) do
      h[#h + 1] = v
   end
   if math.random(1, 50) == 1 then
      h[#h + 1] = "Connection: close"
   end
   if body then
      if how == "chunked" then
         h[#h + 1] = "Transfer-Encoding: chunked"
         body = chunked(body)
      else
         h[#h + 1] = "Content-Length: " .. #body
      end
   end
   return table.concat(h, "\r\n") .. "\r\n\r\n" .. (body or "")
end

local function post(kind, body, how, ctype, sid)
   return req("POST", path(sid or new_flow()), kind,
              { "Content-Type: " .. (ctype or FORM) }, body, how)
end

local function valid_form(n)
   return form(identities(n))
end

-- a valid body whose value at position pos is replaced by bad (raw form text)
local function bad_at(n, pos, bad)
   local ids = identities(n)
   local parts = {}
   for i, v in ipairs(ids) do
      parts[i] = i == pos and bad or "TestUsers=" .. esc(v)
   end
   return table.concat(parts, "&")
end

local kinds = {
   -- valid
   { "get", 14, function() return req("GET", path(new_flow()), "get") end },
   { "get_hot", 3, function()
        return req("GET", path(hot[math.random(#hot)]), "get_hot") end },
   { "get_chunked_empty", 1, function()
        return req("GET", path(new_flow()), "get_chunked_empty", nil, "", "chunked") end },
   { "post_form", 14, function()
        return post("post_form", valid_form(math.random(1, 20)), "cl") end },
   { "post_form_big", 5, function()
        return post("post_form_big", valid_form(math.random(40, 100)), "cl") end },
   { "post_form_long", 1, function()
        return post("post_form_long", form(identities(math.random(60, 100), true)), "cl") end },
   { "post_form_chunked", 5, function()
        return post("post_form_chunked", valid_form(math.random(1, 100)), "chunked") end },
   { "post_form_charset", 2, function()
        return post("post_form_charset", valid_form(math.random(1, 5)), "cl",
                    FORM .. "; charset=UTF-8") end },
   { "post_json", 5, function()
        return post("post_json", json(identities(math.random(1, 50))), "cl",
                    "application/json") end },
   { "post_json_chunked", 2, function()
        return post("post_json_chunked", json(identities(math.random(1, 100))), "chunked",
                    "application/json") end },
   { "post_hot", 4, function()
        return post("post_hot", valid_form(math.random(1, 10)), "cl", nil,
                    hot[math.random(#hot)]) end },

   -- refused before the body
   { "bad_path", 4, function()
        local sid = new_flow()
        local p = ({ path(sid) .. "/", "/v2/Flows/FW123/TestUsers",
                     "/v2//Flows/" .. sid .. "/TestUsers",
                     "/v2/Flows/%46" .. sid:sub(2) .. "/TestUsers",
                     "/v2/flows/" .. sid .. "/testusers", "/",
                     "/v2/Flows/" .. sid .. "/./TestUsers",
                     "/v2/Flows/" .. sid .. "/TestUsers;x=1" })[math.random(8)]
        return req("GET", p, "bad_path") end },
   { "query", 2, function()
        return req("GET", path(new_flow()) .. ({ "?", "?PageSize=50" })[math.random(2)],
                   "query") end },
   { "bad_method", 2, function()
        local m = ({ "DELETE", "PATCH", "OPTIONS", "PUT" })[math.random(4)]
        local body = m == "PUT" and valid_form(3) or nil
        return req(m, path(new_flow()), "bad_method",
                   body and { "Content-Type: " .. FORM } or nil, body, "cl") end },
   { "get_with_body", 2, function()
        return req("GET", path(new_flow()), "get_with_body", nil, valid_form(3), "cl") end },
   { "get_chunked_body", 1, function()
        return req("GET", path(new_flow()), "get_chunked_body", nil, valid_form(60),
                   "chunked") end },
   { "content_type_unsupported", 2, function()
        return post("content_type_unsupported", valid_form(2), "cl",
                    ({ "text/plain", "multipart/form-data; boundary=x",
                       FORM .. "; charset=latin1" })[math.random(3)]) end },
   { "content_type_duplicate", 1, function()
        return req("POST", path(new_flow()), "content_type_duplicate",
                   { "Content-Type: " .. FORM, "Content-Type: " .. FORM },
                   valid_form(2), "cl") end },
   { "missing_identities", 2, function()
        return post("missing_identities", "", "cl") end },

   -- refused by the body, early or late, in memory, temp file or chunked
   { "malformed_escape", 2, function()
        local n = math.random(1, 80)
        return post("malformed_escape",
                    bad_at(n, math.random(n), ({ "TestUsers=%zz", "TestUsers=a%4",
                                                 "TestUsers=%G1" })[math.random(3)]),
                    math.random(2) == 1 and "chunked" or "cl") end },
   { "malformed_form", 2, function()
        local n = math.random(2, 80)
        return post("malformed_form",
                    bad_at(n, math.random(n), ({ "TestUsers=a=b", "" })[math.random(2)]),
                    math.random(2) == 1 and "chunked" or "cl") end },
   { "unknown_parameter", 2, function()
        local n = math.random(1, 80)
        return post("unknown_parameter",
                    bad_at(n, math.random(n), ({ "Foo=bar", "testusers=a",
                                                 "TestUsers%5B%5D=a" })[math.random(3)]),
                    math.random(2) == 1 and "chunked" or "cl") end },
   { "identity_empty", 1, function()
        local n = math.random(1, 80)
        return post("identity_empty", bad_at(n, math.random(n), "TestUsers="), "cl") end },
   { "identity_too_long", 2, function()
        local n = math.random(1, 80)
        return post("identity_too_long",
                    bad_at(n, math.random(n), "TestUsers=" .. string.rep("a", 301)),
                    math.random(2) == 1 and "chunked" or "cl") end },
   { "identity_invalid_utf8", 2, function()
        local n = math.random(1, 80)
        return post("identity_invalid_utf8",
                    bad_at(n, math.random(n), ({ "TestUsers=%FF", "TestUsers=a%C3",
                                                 "TestUsers=%ED%A0%80",
                                                 "TestUsers=%C0%AF" })[math.random(4)]),
                    math.random(2) == 1 and "chunked" or "cl") end },
   { "identity_control_char", 2, function()
        local n = math.random(1, 80)
        return post("identity_control_char",
                    bad_at(n, math.random(n), ({ "TestUsers=a%00", "TestUsers=%0A",
                                                 "TestUsers=%7F", "TestUsers=%C2%85" })[math.random(4)]),
                    math.random(2) == 1 and "chunked" or "cl") end },
   { "duplicate_identity", 2, function()
        local ids = identities(math.random(2, 60))
        ids[#ids + 1] = ids[math.random(#ids)]
        return post("duplicate_identity", form(ids),
                    math.random(2) == 1 and "chunked" or "cl") end },
   { "malformed_json", 2, function()
        local b = ({ '{"TestUsers": "a"}', '[', '{"TestUsers": ["a"]} x',
                     '{"TestUsers": [1]}', '{"TestUsers": ["a", ["b"]]}',
                     '{"TestUsers": ["a"], "TestUsers": ["b"]}' })[math.random(6)]
        return post("malformed_json", b, math.random(2) == 1 and "chunked" or "cl",
                    "application/json") end },
   { "json_unknown_member", 1, function()
        return post("json_unknown_member", '{"TestUsers": ["a"], "x": 1}', "cl",
                    "application/json") end },
   { "json_empty", 1, function()
        return post("json_empty", ({ '{"TestUsers": []}', '{}' })[math.random(2)], "cl",
                    "application/json") end },
   { "json_invalid_identity", 1, function()
        return post("json_invalid_identity", '{"TestUsers": ["a", "b\\u0001"]}', "cl",
                    "application/json") end },
}

local total_weight = 0
for _, k in ipairs(kinds) do
   total_weight = total_weight + k[2]
end

function request()
   local r = math.random(1, total_weight)
   for _, k in ipairs(kinds) do
      r = r - k[2]
      if r <= 0 then
         return k[3]()
      end
   end
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local all = {}
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      for k, v in pairs(s or {}) do
         all[k] = (all[k] or 0) + v
      end
   end
   local f = io.open(os.getenv("SOAK_WRK_STATS") or "/dev/stdout", "w")
   f:write(string.format("requests %d\n", summary.requests))
   f:write(string.format("duration_us %d\n", summary.duration))
   f:write(string.format("errors_connect %d\nerrors_read %d\nerrors_write %d\n"
                         .. "errors_status %d\nerrors_timeout %d\n",
                         summary.errors.connect, summary.errors.read,
                         summary.errors.write, summary.errors.status,
                         summary.errors.timeout))
   f:write(string.format("latency_p50_us %d\nlatency_p99_us %d\nlatency_max_us %d\n",
                         latency:percentile(50), latency:percentile(99), latency.max))
   for k, v in pairs(all) do
      f:write(string.format("status %d %d\n", k, v))
   end
   f:close()
end
