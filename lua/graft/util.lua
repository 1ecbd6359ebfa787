-- graft.util: error helpers and small file reads shared by graft's Lua
-- modules. Errors carry no Lua position: the message is the contract
-- ("graft: <file>: <what is wrong>").

local M = {}

function M.fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

-- A message from a nested graft call without its "graft: " prefix (nor
-- the Lua position luaL_error puts before it).
function M.inner(msg)
  return (tostring(msg):gsub("^[^\n]-:%d+: graft: ", ""):gsub("^graft: ", ""))
end

-- io.open's message repeats the path ("p: No such file or directory").
function M.open_error(path, err)
  err = tostring(err)
  if err:sub(1, #path + 2) == path .. ": " then err = err:sub(#path + 3) end
  M.fail("%s: cannot open: %s", path, err)
end

-- The first n bytes of a file ("" when it is empty).
function M.head(path, n)
  local f, err = io.open(path, "rb")
  if not f then M.open_error(path, err) end
  local ok, head, err2 = pcall(f.read, f, n)
  f:close()
  if not ok or (head == nil and err2) then
    M.fail("%s: cannot read: %s", path, tostring(ok and err2 or head):gsub("^.-: ", ""))
  end
  return head or ""
end

function M.read_text(path)
  local f, err = io.open(path, "rb")
  if not f then M.open_error(path, err) end
  local ok, s, err2 = pcall(f.read, f, "a")
  f:close()
  if not ok or not s then
    M.fail("%s: cannot read: %s", path, tostring(ok and err2 or s):gsub("^.-: ", ""))
  end
  return s
end

-- Whether path is a file that can be read (a directory opens on Linux but
-- reading it fails).
function M.is_file(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok = f:read(0)
  f:close()
  return ok ~= nil
end

function M.dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

return M
