-- graft.provenance: what an output records about how it was made.
--
-- A provenance is a table of string -> string (every value a string, so it
-- fits safetensors' __metadata__, GGUF string kv and HDF5 string attributes):
--   graft.version         graft's version
--   graft.sources         JSON text: [{"name": base name, "sha256": hex}, ...]
--   graft.recipe_sha256   sha256 of the recipe file, when a recipe made it
-- graft.save(path, t, {provenance = p}) merges it under the user's own
-- metadata (a user's key always wins). Nothing is recorded unless asked:
-- the CLI asks by default (convert --no-provenance turns it off; inside
-- `graft run` every graft.save records one unless given provenance = false).

local core = require "graft.core"
local json = require "graft.json"

local M = {}

-- The recipe a running `graft run` registered (graft.provenance.recipe).
local current_recipe = nil

-- Records path as the recipe producing the outputs saved from now on by
-- the CLI; returns its sha256.
function M.register(path)
  current_recipe = { path = path, sha256 = core.sha256_file(path) }
  return current_recipe.sha256
end

function M.recipe() return current_recipe end

-- Files graft.open opened while a recipe is registered: the sources a
-- `graft run` output records (in open order, each once).
local opened, opened_set = {}, {}

function M.opened(path)
  if not current_recipe or opened_set[path] then return end
  local f = io.open(path, "rb")
  if not f then return end -- a TF prefix or a directory: not hashed
  f:close()
  opened_set[path] = true
  opened[#opened + 1] = path
end

-- The provenance graft.save records by default: only inside `graft run`
-- (a registered recipe), else nil.
function M.default()
  if not current_recipe then return nil end
  return M.make(opened)
end

-- sources: list of file paths (hashed, streamed in C; progress(done,total)
-- optional); recipe: a path, or nil for the registered recipe.
function M.make(sources, recipe, progress)
  local list = setmetatable({}, json.array_mt)
  for _, p in ipairs(sources or {}) do
    list[#list + 1] = { name = p:match("[^/]*$"), sha256 = core.sha256_file(p, progress) }
  end
  local out = { ["graft.version"] = core.version, ["graft.sources"] = json.encode(list) }
  local r = recipe and { sha256 = core.sha256_file(recipe) } or current_recipe
  if r then out["graft.recipe_sha256"] = r.sha256 end
  return out
end

-- opts.metadata with the provenance p merged underneath (user keys win);
-- a new table, opts untouched.
function M.merge(metadata, p)
  local out = {}
  for k, v in pairs(p) do out[k] = v end
  for k, v in pairs(metadata or {}) do out[k] = v end
  return out
end

return M
