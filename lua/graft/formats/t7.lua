-- Lua Torch7 .t7 (torch.save): detection and open. Bytes are in
-- src/formats/t7.c; layout and naming in docs/formats/t7.md.

local util = require "graft.util"

local M = { name = "t7" }

M.formats = {
  { name = "t7", description = "Lua Torch7 torch.save files (binary either endianness, ascii): "
      .. "tensors and storages named by their path (modules.1.weight); the object tree in "
      .. "graft.meta.root, functions never loaded (graft.meta.functions)",
    extensions = { "t7" }, read = true, write = false,
    open_options = {
      long_size = "4 or 8: bytes of a binary file's longs (sizes, strides, offsets, Long storages; "
        .. "4 when written on Windows or a 32-bit machine); default: detected from the first header holding longs",
    } },
}

-- t7 has no magic: the first object's type tag, then (for a table or torch
-- object) its index, then for a torch object a version string "V <n>" or
-- a class name. Binary: 4-byte ints in either byte order; ascii: decimal
-- text lines.
local function le32(s, i) return string.unpack("<i4", s, i) end
local function be32(s, i) return string.unpack(">i4", s, i) end

local function binary_head(head, int)
  if #head < 12 then return false end
  local tag, index = int(head, 1), int(head, 5)
  if tag == 3 or tag == 8 or tag == 7 then
    return index == 1 and #head >= 12 and int(head, 9) >= 0 and int(head, 9) < 2^24
  end
  if tag ~= 4 or index ~= 1 then return false end
  local len = int(head, 9)
  if len < 3 or len > 200 or #head < 12 + len then return false end
  local s = head:sub(13, 12 + len)
  return s:match("^V %d+$") ~= nil or s:match("^[%a_][%w_]*%.[%a_][%w_.]*$") ~= nil
end

local function ascii_head(head)
  local tag, index, len, s = head:match("^(%d)\n(%d+)\n(%d+)\n([^\n]*)")
  if tag == "3" then return index == "1" end
  return tag == "4" and index == "1" and #s == tonumber(len)
    and (s:match("^V %d+$") ~= nil or s:match("^[%a_][%w_]*%.[%a_][%w_.]*$") ~= nil)
end

function M.detect(head, path, ctx)
  if ctx.stage ~= "late" then return nil end
  if binary_head(head, le32) or binary_head(head, be32) or ascii_head(head) then return "t7" end
  -- a .t7 file whose first object is a plain value (a number, a string)
  if path:lower():match("%.t7$") and #head >= 4 then
    local tag = le32(head, 1)
    if tag >= 0 and tag <= 8 then return "t7" end
    tag = be32(head, 1)
    if tag >= 0 and tag <= 8 then return "t7" end
    if head:match("^%d\n") then return "t7" end
  end
  return nil
end

-- The C rows: "t7" detects the long size, these force it.
local long_rows = { [4] = "t7_long4", [8] = "t7_long8" }

function M.open(path, opts, ctx)
  local row = "t7"
  if opts.long_size ~= nil then
    row = long_rows[opts.long_size]
    if not row then
      util.fail("%s: opts.long_size must be 4 or 8, not %s", path, tostring(opts.long_size))
    end
  end
  local tensors, names, meta = ctx.read(path, row, opts)
  return ctx.remember(tensors, names, meta)
end

return M
