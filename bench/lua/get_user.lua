-- GET /user/{random id in 1..users}
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local c = dofile(dir .. "common.lua")

function init(args) c.init(args) end

function request()
   return wrk.format("GET", "/user/" .. c.random_id())
end
