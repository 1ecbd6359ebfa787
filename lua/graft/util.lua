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

-- The JSON object in the file at path, or nil when there is no such file
-- or it holds no JSON object (for what an earlier save left there).
function M.json_object(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a") or ""
  f:close()
  local ok, doc = pcall(require("graft.json").decode, text)
  return ok and type(doc) == "table" and doc or nil
end

-- Whether name is not a bare file name (what a manifest or index may name
-- beside itself): not a string, empty, ".", with a "/", a backslash, "..", or
-- a NUL byte.
function M.bad_file_name(name)
  return type(name) ~= "string" or name == "" or name == "."
    or name:find("/", 1, true) or name:find("\\", 1, true)
    or name:find("..", 1, true) or name:find("%z")
end

function M.dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Put a set of files written under temporary names in place as one
-- commit, its index last: the old index is removed first, then each part
-- renamed over its final name, then the index. A reader sees the old set
-- whole, no index, or the new set whole; never new parts under an old
-- index. parts: { {tmp, path}, ... }; index: {tmp, path}. Files the old
-- index named (`stale`: paths) that the new set does not are removed last.
function M.commit_set(parts, index, stale)
  local ok, err = os.remove(index[2])
  if not ok and M.is_file(index[2]) then M.fail("%s: cannot replace: %s", index[2], err) end
  local new = {}
  for _, p in ipairs(parts) do
    local renamed, rerr = os.rename(p[1], p[2])
    if not renamed then M.fail("%s: cannot rename into place: %s", p[2], rerr) end
    new[p[2]] = true
  end
  local renamed, rerr = os.rename(index[1], index[2])
  if not renamed then M.fail("%s: cannot rename into place: %s", index[2], rerr) end
  new[index[2]] = true
  M.remove_stale(stale, new)
end

-- After a sharded save: remove the files of the old set (stale: paths its
-- index named) that the new set (keep: path -> true) did not write over.
function M.remove_stale(stale, keep)
  for _, f in ipairs(stale or {}) do
    if not keep[f] then os.remove(f) end
  end
end

return M
