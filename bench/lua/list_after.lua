-- GET /users?limit=10&after_id={random in 1..users-10}: keyset paging, an index range
-- scan at any depth.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local c = dofile(dir .. "common.lua")

function init(args) c.init(args) end

function request()
   return wrk.format("GET", "/users?limit=10&after_id=" .. math.random(1, c.users - 10))
end
