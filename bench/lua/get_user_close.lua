-- GET /user/{random id in 1..users}, each on a new connection (Connection: close): over
-- HTTPS every request pays a full handshake, so this measures handshakes per second.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local c = dofile(dir .. "common.lua")

function init(args) c.init(args) end

function request()
   return wrk.format("GET", "/user/" .. c.random_id(), { ["Connection"] = "close" })
end
