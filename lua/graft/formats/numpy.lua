-- graft.formats.numpy: numpy's .npy (one array) and .npz (a zip of .npy
-- members). Bytes live in C (src/formats/npy.c).

local M = { name = "numpy" }

M.formats = {
  { name = "npy", description = "numpy .npy: one array (np.save)",
    extensions = { "npy" }, read = true, write = true },
  { name = "npz", description = "numpy .npz: a zip of .npy members (np.savez)",
    extensions = { "npz" }, read = true, write = true,
    save_options = { compress = "true: deflate the members (np.savez_compressed)" } },
}

-- An .npy starts with its magic; any zip no other format claimed is an
-- .npz (np.savez writes no marker of its own).
function M.detect(head, _, ctx)
  if ctx.stage == "bytes" and head:sub(1, 6) == "\x93NUMPY" then return "npy" end
  if ctx.stage == "late" and (head:sub(1, 4) == "PK\3\4" or head:sub(1, 4) == "PK\5\6") then
    return "npz"
  end
  return nil
end

function M.open(path, _, ctx)
  return ctx.remember(ctx.read(path, ctx.format))
end

function M.save(path, tensors, names, opts, ctx)
  local input = { progress = ctx.progress(path) }
  if ctx.format == "npz" then input.compress = opts.compress and true or false end
  ctx.write(path, ctx.format, names, tensors, input)
end

return M
