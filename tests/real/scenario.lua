-- The scripted scenario tests/real_lua.rs drives: it blocks reading stdin
-- lines (io.lines, in Lua's liolib.c) and answers each command.
--   upper N WORD   calls string.upper(WORD) N times (str_upper in lstrlib.c)
--   fib N          a recursive Lua function, for deep luaV_execute stacks
--   quit           ends the script
local pid = io.open("/proc/self/stat"):read("n")
io.write("ready ", pid, "\n")
io.stdout:flush()

local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end

local function shout(word)
  return string.upper(word)
end

for line in io.lines() do
  local cmd, n, word = line:match("^(%S+)%s*(%d*)%s*(.*)$")
  if cmd == "quit" then
    break
  elseif cmd == "upper" then
    local last
    for _ = 1, tonumber(n) do
      last = shout(word)
    end
    io.write("upper ", last, "\n")
  elseif cmd == "fib" then
    io.write("fib ", fib(tonumber(n)), "\n")
  else
    io.write("unknown ", line, "\n")
  end
  io.stdout:flush()
end
