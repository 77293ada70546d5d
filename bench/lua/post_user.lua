-- POST /user with a unique email per request
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local c = dofile(dir .. "common.lua")

function init(args) c.init(args) end

request = c.post_user
