-- 80 % GET /user/{random id}, 20 % POST /user (unique emails), drawn per request.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local c = dofile(dir .. "common.lua")

function init(args) c.init(args) end

function request()
   if math.random() < 0.2 then
      return c.post_user()
   end
   return wrk.format("GET", "/user/" .. c.random_id())
end
