-- GET /users?limit=10&offset={random in 0..10000}: PostgreSQL reads and skips
-- `offset` rows, so this is bound by the database. 10 000 is the server's default
-- MAX_LIST_OFFSET: a deeper offset is a 400 (docs/API.md).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local c = dofile(dir .. "common.lua")

function init(args) c.init(args) end

function request()
   return wrk.format("GET", "/users?limit=10&offset=" .. math.random(0, math.min(c.users - 10, 10000)))
end
