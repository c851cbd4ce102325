-- The Test Users gate written with lua-nginx-module: what an operator would
-- otherwise put in front of Twilio Studio's Test Users API.  Used by
-- bench/run.sh as configuration (c), against the C module (b).
--
--   lua_package_path "/path/to/bench/?.lua;;";
--   init_by_lua_block { require("studio_gate").init("/path/to/credentials") }
--   location /v2/Flows/ {
--       access_by_lua_block { require("studio_gate").check() }
--       proxy_pass ...;
--   }
--
-- Rules, as the module's: exactly /v2/Flows/FW<32 hex>/TestUsers, no query
-- string; GET (without a body) and POST only; POST needs an
-- application/x-www-form-urlencoded Content-Type (a charset, if given, must
-- be UTF-8); the body, read whole (in memory or from its temp file), is
-- decoded strictly (empty fields, a trailing '&', a bad escape or an
-- unescaped '=' in a value are refused; every key must decode to
-- TestUsers); every value is 1..300 bytes of valid UTF-8 (RFC 3629: no
-- overlong forms, no surrogates) without C0, DEL or C1 controls; no value
-- may repeat.  The client's Authorization is replaced with the service
-- credential read from a SID:SECRET file when the configuration loads.
--
-- Not done here (the module does them): a second Content-Type header is
-- not detected (it would cost ngx.req.get_headers() on every request), a
-- chunked GET body is refused rather than read, errors are bare statuses
-- rather than Twilio's JSON, and there is no per-flow update lock.

local ngx = ngx
local re_find = ngx.re.find
local unescape_uri = ngx.unescape_uri
local find, sub, gsub = string.find, string.sub, string.gsub

local _M = {}

local BASIC

local PATH_RE = [[^/v2/Flows/FW[0-9a-fA-F]{32}/TestUsers$]]
local TYPE_RE = [[^[ \t]*application/x-www-form-urlencoded[ \t]*(?:;|$)]]
local CHARSET_RE = [[;[ \t]*charset[ \t]*=[ \t]*("?)([^";, \t]*)\1[ \t]*(?:;|$)]]
local BAD_ESCAPE_RE = [[%(?![0-9A-Fa-f]{2})]]

-- printable ASCII, or a well-formed UTF-8 sequence other than U+0080..U+009F
local IDENTITY_RE = [=[^(?:[\x20-\x7e]|\xc2[\xa0-\xbf]|[\xc3-\xdf][\x80-\xbf]]=]
    .. [=[|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}]=]
    .. [=[|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}]=]
    .. [=[|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})+$]=]


function _M.init(path)
    local f = assert(io.open(path, "rb"))
    local line = f:read("*a")
    f:close()

    line = gsub(line, "\r?\n$", "")

    if not (find(line, "^AC%x+:%w+$") or find(line, "^SK%x+:%w+$"))
        or #line ~= 34 + 1 + 32
    then
        error("studio_gate: " .. path .. ": not one SID:SECRET line")
    end

    BASIC = "Basic " .. ngx.encode_base64(line)
end


local function reject(status)
    return ngx.exit(status)
end


-- a form component: '+' is a space, %XX a byte, a bad escape is refused
local function decode(s)
    if find(s, "%", 1, true) then
        if re_find(s, BAD_ESCAPE_RE, "jo") then
            return nil
        end

        return unescape_uri((gsub(s, "%+", "%%20")))
    end

    if find(s, "+", 1, true) then
        return (gsub(s, "%+", " "))
    end

    return s
end


local function check_body(body)
    local seen = {}
    local len = #body
    local pos = 1

    while true do
        local amp = find(body, "&", pos, true)
        local stop = amp and amp - 1 or len

        if stop < pos then
            return reject(400)                  -- empty field
        end

        local key, value
        local eq = find(body, "=", pos, true)

        if eq and eq <= stop then
            key = sub(body, pos, eq - 1)
            value = sub(body, eq + 1, stop)
        else
            key = sub(body, pos, stop)
            value = ""
        end

        if key ~= "TestUsers" then
            local k = decode(key)
            if k ~= "TestUsers" then
                return reject(400)              -- bad escape, unknown key
            end
        end

        if find(value, "=", 1, true) then
            return reject(400)                  -- unescaped '=' in a value
        end

        value = decode(value)

        if value == nil then
            return reject(400)                  -- malformed escape
        end

        local n = #value

        if n == 0 or n > 300 then
            return reject(400)                  -- empty or too long
        end

        if not re_find(value, IDENTITY_RE, "jo") then
            return reject(400)                  -- bad UTF-8, control char
        end

        if seen[value] then
            return reject(400)                  -- duplicate
        end

        seen[value] = true

        if not amp then
            return
        end

        pos = amp + 1

        if pos > len then
            return reject(400)                  -- trailing '&'
        end
    end
end


function _M.check()
    local var = ngx.var

    local uri = var.request_uri
    local q = find(uri, "?", 1, true)

    if not re_find(q and sub(uri, 1, q - 1) or uri, PATH_RE, "jo") then
        return reject(404)
    end

    if q then
        return reject(400)
    end

    local method = ngx.req.get_method()

    if method == "GET" then
        local cl = tonumber(var.http_content_length or "0")
        if (cl and cl > 0) or var.http_transfer_encoding then
            return reject(400)
        end

    elseif method == "POST" then
        local ct = var.http_content_type

        if not ct or not re_find(ct, TYPE_RE, "joi") then
            return reject(415)
        end

        local m = ngx.re.match(ct, CHARSET_RE, "joi")
        if m and m[2]:lower() ~= "utf-8" then
            return reject(415)
        end

        ngx.req.read_body()

        local body = ngx.req.get_body_data()

        if body == nil then
            local file = ngx.req.get_body_file()

            if file then
                local f = io.open(file, "rb")
                if not f then
                    return reject(500)
                end

                body = f:read("*a")
                f:close()
            end
        end

        if body == nil or #body == 0 then
            return reject(400)                  -- missing TestUsers
        end

        check_body(body)

    else
        ngx.header["Allow"] = "GET, POST"
        return reject(405)
    end

    ngx.req.set_header("Authorization", BASIC)
end


return _M
