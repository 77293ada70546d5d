-- GET /users?limit=100&after_id={random in 1..users-100}: a full page of 100, where the
-- server's JSON encoding and allocation show.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local c = dofile(dir .. "common.lua")

function init(args) c.init(args) end

function request()
   return wrk.format("GET", "/users?limit=100&after_id=" .. math.random(1, c.users - 100))
end
