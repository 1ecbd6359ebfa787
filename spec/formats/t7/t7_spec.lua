-- Torch7 .t7: the real files of ../shared/fixtures/real/t7 as MANIFEST.md
-- section 8 describes them, and files spec/fixtures/gen_t7.py writes byte by
-- byte as torch7's File.lua does (binary little- and big-endian with 8- and
-- 4-byte longs, ascii) with the values it records in expected.json.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local function real(name) return H.real("t7/python-torchfile-testfiles/" .. name) end

local function values(t)
  if t.numel == 0 then return {} end
  return H.flat(t:cast("float64"):totable())
end

describe("t7: real files (python-torchfile testfiles)", function()
  it("doubletensor.t7 is [[1,2,3],[4,5,6.9]]", function()
    local m = graft.open(real("doubletensor.t7"))
    assert.are.same({ "tensor" }, graft.names(m))
    local t = m.tensor
    assert.are.equal("float64", t.dtype)
    assert.are.same({ 2, 3 }, t.shape)
    assert.are.same({ 1, 2, 3, 4, 5, 6.9 }, values(t))
    local meta = graft.meta(m)
    assert.are.equal("t7", meta.format)
    assert.are.equal("binary-le", meta.encoding)
  end)

  it("floattensor.t7 is float32 [2,3,4] summing to 12.9724167", function()
    local m = graft.open(real("floattensor.t7"))
    local t = m.tensor
    assert.are.equal("float32", t.dtype)
    assert.are.same({ 2, 3, 4 }, t.shape)
    local s = 0
    for _, v in ipairs(values(t)) do s = s + v end
    assert.is_true(math.abs(s - 12.97241666913) < 1e-6, tostring(s))
  end)

  it("tables: hello=123, list_table, map tables", function()
    local root = graft.meta(graft.open(real("hello=123.t7"))).root
    assert.are.same({ hello = 123 }, root)
    assert.are.equal("float", math.type(root.hello))
    root = graft.meta(graft.open(real("list_table.t7"))).root
    assert.are.same({ "hello", "world", "third item", 123 }, root)
    -- map_table1 adds key 0, map_table2 a string key, to the list
    root = graft.meta(graft.open(real("map_table1.t7"))).root
    assert.are.same({ [0] = "zero", "hello", "world", "third item", 123 }, root)
    root = graft.meta(graft.open(real("map_table2.t7"))).root
    assert.are.same({ a = "non number key", "hello", "world", "third item", 123 }, root)
  end)

  it("custom_class.t7: an object of class Blah, version string V 1", function()
    local meta = graft.meta(graft.open(real("custom_class.t7")))
    assert.are.equal("Blah", meta.root.__object)
    assert.are.same({ "Blah" }, meta.classes)
  end)

  it("recursive_class.t7 and recursive_kv_table.t7: cycles become references", function()
    local root = graft.meta(graft.open(real("recursive_class.t7"))).root
    assert.are.equal("A", root.__object)
    assert.are.equal("t7.ref", root[1].a.__object)
    assert.are.equal("(root)", root[1].a[1])
    root = graft.meta(graft.open(real("recursive_kv_table.t7"))).root
    local k, v = next(root)
    assert.are.equal("t7.ref", k.__object)
    assert.are.equal("t7.ref", v.__object)
    assert.is_nil(next(root, k))
  end)

  it("tds.Hash and tds.Vec", function()
    local root = graft.meta(graft.open(real("tds_hash.t7"))).root
    assert.are.equal("tds.Hash", root.__object)
    assert.are.equal(2, root[1][1])
    assert.are.equal(11, root[1][10])
    local n = 0
    for _ in pairs(root[1]) do n = n + 1 end
    assert.are.equal(3, n)
    root = graft.meta(graft.open(real("tds_vec.t7"))).root
    assert.are.equal("tds.Vec", root.__object)
    assert.are.same({ 123, 456 }, root[1])
  end)

  it("functions are placeholders, never loaded, named in graft.meta", function()
    for _, f in ipairs({ "function.t7", "function_upvals.t7" }) do
      local meta = graft.meta(graft.open(real(f)))
      assert.are.same({ "(root)" }, meta.functions)
      assert.are.equal("t7.function", meta.root.__object)
      assert.is_true(meta.root[2] > 0)
    end
  end)

  it("nngraph_node.t7 opens as an nngraph.Node", function()
    local meta = graft.meta(graft.open(real("nngraph_node.t7")))
    assert.are.equal("nngraph.Node", meta.root.__object)
  end)

  it("gmodule_with_linear_identity.t7: the Linear's weight and bias", function()
    local m = graft.open(real("gmodule_with_linear_identity.t7"))
    local w, b
    for _, n in ipairs(graft.names(m)) do
      if n:match("%.weight$") then w = m[n] end
      if n:match("%.bias$") then b = m[n] end
    end
    assert.are.same({ 2, 1 }, w.shape)
    assert.are.equal("float64", w.dtype)
    local wv, bv = values(w), values(b)
    assert.is_true(math.abs(wv[1] - -0.02483730) < 1e-8 and math.abs(wv[2] - 0.17503954) < 1e-8)
    assert.is_true(math.abs(bv[1] - 0.05159848) < 1e-8 and math.abs(bv[2] - -0.25367146) < 1e-8)
    local meta = graft.meta(m)
    assert.are.equal("nn.gModule", meta.root.__object)
    local seen = {}
    for _, c in ipairs(meta.classes) do seen[c] = true end
    assert.is_true(seen["nn.Linear"] and seen["nn.Identity"] and seen["nn.CAddTable"])
  end)
end)

describe("t7: generated files (gen_t7.py)", function()
  local dir = H.tmpdir()
  H.py(H.read("spec/fixtures/gen_t7.py"), dir)
  local expected = json.decode(H.read(dir .. "/expected.json"))

  local encoding = { le = "binary-le", be = "binary-be", ascii = "ascii", le4 = "binary-le",
                     be4 = "binary-be" }
  local long_size = { le = 8, be = 8, le4 = 4, be4 = 4 }
  for _, enc in ipairs({ "le", "be", "ascii", "le4", "be4" }) do
    for _, stem in ipairs({ "types", "model", "shared", "edge" }) do
      local file = stem .. "_" .. enc .. ".t7"
      it(file .. ": names, dtypes, shapes and values as written", function()
        local exp = expected[file]
        local m = graft.open(dir .. "/" .. file)
        assert.are.same(exp.names, graft.names(m))
        for name, e in pairs(exp.tensors) do
          local t = m[name]
          assert.are.equal(e.dtype, t.dtype, name)
          assert.are.same(e.shape, t.shape, name)
          assert.are.same(e.values, values(t), name)
        end
        local meta = graft.meta(m)
        assert.are.equal(encoding[enc], meta.encoding)
        assert.are.equal(long_size[enc], meta.long_size)
        assert.are.same(exp.functions, meta.functions)
      end)
    end

    it("model_" .. enc .. ".t7: object tree, self-reference and function placeholder", function()
      local m = graft.open(dir .. "/model_" .. enc .. ".t7")
      local root = graft.meta(m).root
      assert.are.equal("nn.Sequential", root.__object)
      local state = root[1]
      assert.are.equal("t7.ref", state.self.__object)
      local lin = state.modules[1]
      assert.are.equal("nn.Linear", lin.__object)
      assert.are.equal(m["modules.1.weight"], lin[1].weight)
      local hook = lin[1].hook
      assert.are.equal("t7.function", hook.__object)
      assert.are.equal("modules.1.hook", hook[1])
      assert.are.equal("scale", hook[3][1].name)
    end)

    it("shared_" .. enc .. ".t7: tensors on one storage share one graft storage", function()
      local m = graft.open(dir .. "/shared_" .. enc .. ".t7")
      local id = m.a:storage_id()
      assert.are.equal(id, m.b:storage_id())
      assert.are.equal(id, m.c:storage_id())
      assert.are.equal(id, m.s:storage_id())
    end)
  end

  it("files of 4-byte longs read as their 8-byte versions (both byte orders)", function()
    for _, stem in ipairs({ "types", "model", "shared", "edge" }) do
      for _, bo in ipairs({ "le", "be" }) do
        local m8 = graft.open(dir .. "/" .. stem .. "_" .. bo .. ".t7")
        local m4 = graft.open(dir .. "/" .. stem .. "_" .. bo .. "4.t7")
        assert.are.same(graft.names(m8), graft.names(m4))
        for _, name in ipairs(graft.names(m8)) do
          local a, b = m8[name], m4[name]
          assert.are.equal(a.dtype, b.dtype, name)
          assert.are.same(a.shape, b.shape, name)
          assert.are.same(a:totable(), b:totable(), name)
        end
      end
    end
    -- a Long storage's elements are longs too: 4 bytes each, sign-extended
    assert.are.same({ 3, -1, 0 }, graft.open(dir .. "/edge_be4.t7").st:totable())
    assert.are.same({ 1.5, "x" }, graft.meta(graft.open(dir .. "/edge_le4.t7")).root.vec[1])
  end)

  it("open option long_size forces the size of a long; a wrong one is a clear error", function()
    for _, f in ipairs({ "model_le4.t7", "edge_be4.t7" }) do
      local m = graft.open(dir .. "/" .. f, { long_size = 4 })
      assert.are.equal(4, graft.meta(m).long_size)
      local err = H.raises(function() graft.open(dir .. "/" .. f, { long_size = 8 }) end)
      assert.is_truthy(err:find("graft: " .. dir .. "/" .. f .. ": ", 1, true), err)
      assert.is_truthy(err:find("(long_size = 8 given, but the file reads with 4-byte longs)", 1, true), err)
    end
    assert.are.equal(8, graft.meta(graft.open(dir .. "/model_be.t7", { long_size = 8 })).long_size)
    local err = H.raises(function() graft.open(dir .. "/model_be.t7", { long_size = 4 }) end)
    assert.is_truthy(err:find("(long_size = 4 given, but the file reads with 8-byte longs)", 1, true), err)
    -- ascii files write longs as text: the option changes nothing
    local m = graft.open(dir .. "/edge_ascii.t7", { long_size = 4 })
    assert.are.same({ 3, -1, 0 }, m.st:totable())
    assert.is_nil(graft.meta(m).long_size)
    err = H.raises(function() graft.open(dir .. "/model_le.t7", { long_size = 2 }) end)
    assert.is_truthy(err:find("opts.long_size must be 4 or 8, not 2", 1, true), err)
  end)

  it("the weight and its transposed view share one storage", function()
    local m = graft.open(dir .. "/model_le.t7")
    assert.are.equal(m["modules.1.weight"]:storage_id(), m["modules.1.weightT"]:storage_id())
  end)

  it("strings keep their bytes, numbers are floats, booleans booleans", function()
    for _, enc in ipairs({ "le", "be", "ascii", "le4", "be4" }) do
      local root = graft.meta(graft.open(dir .. "/types_" .. enc .. ".t7")).root
      assert.are.equal("héllo\nworld", root.title)
      assert.are.equal(0.125, root.lr)
      assert.are.equal(true, root.train)
    end
  end)
end)

describe("t7 on the command line (graft ls/show/convert/diff)", function()
  local run = H.graft

  it("lists, shows, converts to safetensors and diffs a generated big-endian model", function()
    local dir = H.tmpdir()
    H.py(H.read("spec/fixtures/gen_t7.py"), dir)
    local src = dir .. "/model_be.t7"
    local out, err, code = run("ls", src)
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("modules.1.weightT", 1, true), out)
    assert.is_truthy(out:find("4 tensors", 1, true), out)
    out, err, code = run("show", src, "modules.1.weightT")
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("[0.5, 3.5, -1.25, -0.75, 2.0, 0.001]", 1, true), out)
    out, err, code = run("convert", src, dir .. "/m.safetensors")
    assert.are.equal(0, code, err)
    out, err, code = run("diff", src, dir .. "/m.safetensors")
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("same", 1, true), out)
    out, err, code = run("diff", dir .. "/model_le.t7", dir .. "/model_ascii.t7")
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("same", 1, true), out)
  end)
end)
