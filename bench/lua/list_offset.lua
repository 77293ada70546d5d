-- GET /users?limit=10&offset={random in 0..users-10}: PostgreSQL reads and skips
-- `offset` rows, so this is bound by the database.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local c = dofile(dir .. "common.lua")

function init(args) c.init(args) end

function request()
   return wrk.format("GET", "/users?limit=10&offset=" .. math.random(0, c.users - 10))
end
