-- Lazy elementwise arithmetic (tensor/expr.c): results bit for bit against
-- torch 2 (the oracle environment; spec/fixtures/gen_arith.py writes the
-- inputs and torch's results), reductions against numpy's float64 sums,
-- laziness proven by the evaluation counter and peak RSS, and the folding
-- recipes of issue 12 against torch's own fusion code.
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"

local ops = {
  add = function(a, b) return a + b end,
  sub = function(a, b) return a - b end,
  mul = function(a, b) return a * b end,
  div = function(a, b) return a / b end,
  neg = function(a) return -a end,
  sqrt = function(a) return a:sqrt() end,
  rsqrt = function(a) return a:rsqrt() end,
}

local function shape_of(s)
  local t = {}
  for n in s:gmatch("%d+") do t[#t + 1] = tonumber(n) end
  return t
end

-- An operand or expected value from its cases.txt form.
local function value(dir, s)
  local kind, rest = s:sub(1, 1), s:sub(3)
  if kind == "i" then return math.tointeger(tonumber(rest)) end
  if kind == "f" then return tonumber(rest) end
  local file, dtype, shape = rest:match("^([^:]+):([^:]+):(.*)$")
  return core.tensor(H.read(dir .. "/" .. file), dtype, shape_of(shape))
end

local function load_cases()
  local dir = H.tmpdir()
  H.oracle(H.read("spec/fixtures/gen_arith.py"), dir)
  local cases = {}
  for line in io.lines(dir .. "/cases.txt") do
    local lhs, want = line:match("^(.-) = (%S+)$")
    local w = {}
    for x in lhs:gmatch("%S+") do w[#w + 1] = x end
    local c = { name = w[1], op = w[2], want = value(dir, want), args = {} }
    for i = 3, #w do c.args[#c.args + 1] = value(dir, w[i]) end
    cases[#cases + 1] = c
  end
  return cases
end

local function run(c)
  local op, dim, close = c.op:match("^(%a+):?(%d*)(~?)$")
  if op == "sum" or op == "mean" then
    return c.args[1][op](c.args[1], tonumber(dim)), close == "~"
  end
  return ops[op](c.args[1], c.args[2]), false
end

-- Bit for bit but for NaN payloads and signs (numpy and torch differ there
-- too): every NaN matches a NaN, every other value (-0 included) itself.
local function same_values(a, b)
  local x, y = H.flat(a:totable()), H.flat(b:totable())
  for i = 1, #x do
    local p, q = x[i], y[i]
    if p ~= p then
      if q == q then return false end
    elseif p ~= q or (p == 0 and 1 / p ~= 1 / q) then
      return false
    end
  end
  return #x == #y
end

describe("arithmetic against torch", function()
  local cases = load_cases()

  it("has the generated cases", function()
    assert.is_true(#cases > 300)
  end)

  it("gives torch's dtype, shape and bits for every case", function()
    local bad = {}
    for _, c in ipairs(cases) do
      local ok, r, close = pcall(run, c)
      local why
      if not ok then
        why = tostring(r)
      elseif r.dtype ~= c.want.dtype then
        why = "dtype " .. r.dtype .. ", torch " .. c.want.dtype
      elseif table.concat(r.shape, ",") ~= table.concat(c.want.shape, ",") then
        why = "shape {" .. table.concat(r.shape, ",") .. "}"
      elseif close then
        if not r:allclose(c.want, 1e-12, 0) then why = "not close" end
      elseif r:bytes() ~= c.want:bytes() and not same_values(r, c.want) then
        why = "bits differ, max abs diff " .. tostring(r:max_abs_diff(c.want))
      end
      if why then bad[#bad + 1] = c.name .. ": " .. why end
    end
    assert.are.same({}, bad)
  end)
end)

describe("arithmetic", function()
  local a = core.tensor({ 1, 2, 3 }, "float32")

  it("refuses shapes that do not broadcast, naming both", function()
    local msg = H.raises(function() return a + core.zeros({ 2, 2 }) end)
    assert.matches("add: shapes {3} and {2,2} do not broadcast", msg, 1, true)
    msg = H.raises(function() return core.zeros({ 4, 1, 5 }) * core.zeros({ 3, 4 }) end)
    assert.matches("mul: shapes {4,1,5} and {3,4} do not broadcast", msg, 1, true)
  end)

  it("refuses string, complex and bool-with-bool operands", function()
    local s = core.tensor("\0\0\0\0\0\0\0\0", "complex64", { 1 })
    assert.matches("complex64 tensors have no arithmetic",
      H.raises(function() return s + 1 end), 1, true)
    local b = core.tensor({ 1, 0 }, "bool")
    assert.matches("two bool operands", H.raises(function() return b + b end), 1, true)
    assert.matches("cannot be negated", H.raises(function() return -b end), 1, true)
    assert.matches("a tensor or a number expected, got string",
      H.raises(function() return a + "1" end), 1, true)
  end)

  it("refuses string tensors", function()
    local dir = H.tmpdir()
    H.py([[
import numpy as np, sys
np.save(sys.argv[1] + "/s.npy", np.array(["a", "bc"]))
]], dir)
    local s = graft.open(dir .. "/s.npy")
    local t = s[graft.names(s)[1]]
    assert.equal("string", t.dtype)
    assert.matches("string tensors have no arithmetic",
      H.raises(function() return t + 1 end), 1, true)
    assert.matches("sum of a string tensor", H.raises(function() return t:sum(1) end), 1, true)
  end)

  it("refuses released handles", function()
    local x = core.tensor({ 1, 2 })
    local y <close> = x + 1
    local z = x * 2
    getmetatable(z).__close(z)
    assert.matches("released", H.raises(function() return z + 1 end))
    assert.matches("released", H.raises(function() return 1 + z end))
    assert.matches("released", H.raises(function() return z:sqrt() end))
    assert.same({ 2, 3 }, y:totable())
  end)

  it("has method forms and Lua numbers on either side", function()
    assert.same({ 2, 3, 4 }, a:add(1):totable())
    assert.same({ -1, 0, 1 }, a:sub(2):totable())
    assert.same({ 2, 4, 6 }, a:mul(2):totable())
    assert.same({ 0.5, 1, 1.5 }, a:div(2):totable())
    assert.same({ 1, 0, -1 }, (2 - a):totable())
    assert.same({ 6, 3, 2 }, (6 / a):totable())
    assert.same({ -1, -2, -3 }, a:neg():totable())
    assert.same({ 2, 4, 6 }, a:add(a):totable())
  end)

  it("sum and mean take negative dims, keepdim, and no dim", function()
    local m = core.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float64")
    assert.same({ 6, 15 }, m:sum(-1):totable())
    assert.same({ { 6 }, { 15 } }, m:sum(2, true):totable())
    assert.same({ 2, 1 }, m:sum(-1, true).shape)
    assert.equal(21, m:sum():totable())
    assert.same({ 1, 1 }, m:mean(nil, true).shape)
    assert.equal(3.5, m:mean():totable())
    assert.same({ 2.5, 3.5, 4.5 }, m:mean(1):totable())
    assert.matches("out of range", H.raises(function() return m:sum(3) end))
    local e = core.zeros({ 2, 0 })
    local r = e:mean(2):totable()
    assert.is_true(r[1] ~= r[1]) -- NaN
    assert.same({ 0, 0 }, e:sum(2):totable())
  end)

  it("sums an expression over a dim without materialising it", function()
    local x = core.tensor({ { 1, 2 }, { 3, 4 } }) * 10 + core.ones({ 2 })
    local n = core.testing.expr_loads()
    assert.same({ 32, 72 }, x:sum(2):totable())
    assert.equal(n, core.testing.expr_loads())
  end)

  it("ones and full", function()
    assert.same({ 1, 1 }, core.ones({ 2 }):totable())
    assert.equal("float32", core.ones({ 2 }).dtype)
    assert.same({ { 7, 7, 7 } }, core.full({ 1, 3 }, 7, "int16"):totable())
    assert.equal("int16", core.full({ 1 }, 7, "int16").dtype)
    assert.same({ true, true }, core.full({ 2 }, true, "bool"):totable())
    assert.same({ 0.5 }, core.full({ 1 }, 0.5, "float64"):totable())
    assert.same({}, core.ones({ 0 }):totable())
    assert.matches("NaN", H.raises(function() return core.full({ 2 }, 0 / 0, "int32") end))
    assert.matches("no string tensors", H.raises(function() return core.full({ 2 }, 1, "string") end))
    -- stride 0: one element stored whatever the shape
    local big = core.ones({ 1 << 20, 1 << 10 }, "float32")
    assert.equal(1 << 32, big.nbytes)
  end)
end)

describe("lazy evaluation", function()
  it("builds expressions without evaluating; views of them stay lazy", function()
    local a = core.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    local b = core.tensor({ 10, 20, 30 })
    local n0 = core.testing.expr_loads()
    local x = (a + b) * 2 - a:sqrt()
    assert.equal(n0, core.testing.expr_loads())
    -- whole, cast, reshape, narrow/select of dim 1: computed as streamed
    local h = x:half()
    assert.equal("float16", h.dtype)
    assert.same({ 2, 3 }, h.shape)
    h:contiguous()
    x:reshape(3, 2):totable()
    x:narrow(1, 2, 1):totable()
    x:select(1, 1):totable()
    assert.is_true(x:equal(x:clone()))
    assert.equal(n0, core.testing.expr_loads())
    -- views of a whole expression apply to its operands: still lazy
    local m = x:clone()
    assert.is_true(x:t():equal(m:t()))
    assert.is_true(x:permute(2, 1):contiguous():equal(m:t():contiguous()))
    assert.is_true(x:flip(2):equal(m:flip(2)))
    assert.is_true(x:narrow(2, 2, 2):equal(m:narrow(2, 2, 2)))
    assert.is_true(x:select(2, 3):equal(m:select(2, 3)))
    assert.is_true(x:unsqueeze(2):squeeze(2):equal(m))
    assert.is_true(x:split(2, 2)[2]:equal(m:narrow(2, 3, 1)))
    assert.equal(n0, core.testing.expr_loads())
    -- a view of a cast of an expression computes it once (documented rule)
    local p = x:half():t():contiguous()
    assert.equal(n0 + 1, core.testing.expr_loads())
    assert.is_true(p:t():equal(m:half()))
  end)

  it("gives the same values through views as through the whole", function()
    local a = core.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float64")
    local x = a * a + 1
    local want = { { 2, 5, 10 }, { 17, 26, 37 } }
    assert.same(want, x:totable())
    assert.same({ 17, 26, 37 }, (a * a + 1):select(1, 2):totable())
    assert.same({ { 2, 17 }, { 5, 26 }, { 10, 37 } }, (a * a + 1):t():totable())
    assert.same({ 5, 26 }, (a * a + 1):narrow(2, 2, 1):reshape(2):totable())
    assert.same({ 37, 26, 17, 10, 5, 2 }, (a * a + 1):reshape(6):flip(1):totable())
    -- an expression of expressions, a cast expression as an operand
    local y = (x + x:half()) / 2
    assert.same(want, y:totable())
    assert.equal("float64", y.dtype)
  end)

  it("takes views of expressions as operands, on the threaded path too", function()
    local n0 = core.testing.expr_loads()
    -- 2 MiB results: evaluation is split over the worker pool
    local v = core.tensor({ 1, 2, 3, 4 }, "float32")
    local m = core.full({ 1 << 17, 4 }, 0.5, "float32")
    local row = (v + 1):reshape(1, 4)      -- a reshaped expression: a leaf
    local x = (m + row):sum(1)             -- broadcast over 2^17 rows
    assert.same({ 2.5 * (1 << 17), 3.5 * (1 << 17), 4.5 * (1 << 17), 5.5 * (1 << 17) },
      x:totable())
    local big = m * core.tensor({ 1, 2, 3, 4 }, "float32")
    local y = big:t() + 1                  -- a permuted expression: inlined
    local want = { 1.5, 2, 2.5, 3 }
    local got = y:narrow(2, 1 << 16, 1):reshape(4):totable()
    assert.same(want, got)
    assert.same({ 4, 1 << 17 }, y.shape)
    local z = (y * 2):sum(2)
    assert.same({ 3 * (1 << 17), 4 * (1 << 17), 5 * (1 << 17), 6 * (1 << 17) }, z:totable())
    -- only the reshaped leaf was computed in full (its broadcast boxes are
    -- not runs of it); y:narrow applied to y's operands
    assert.equal(n0 + 1, core.testing.expr_loads())
  end)

  it("writes one expression saved under two names (a shared torch storage)", function()
    local dir = H.tmpdir()
    local a = core.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float32")
    local s = a * 2 + 1
    graft.save(dir .. "/tied.pt", { x = s, y = s, z = s:narrow(1, 2, 1) })
    local out = H.py([[
import sys, torch
d = torch.load(sys.argv[1])
print(d["x"].tolist(), d["y"].tolist(), d["z"].tolist())
]], dir .. "/tied.pt")
    assert.equal("[[3.0, 5.0, 7.0], [9.0, 11.0, 13.0]] [[3.0, 5.0, 7.0], [9.0, 11.0, 13.0]] [[9.0, 11.0, 13.0]]",
      out:match("^(.-)%s*$"))
  end)

  -- In a fresh process: the suite's own earlier peak would hide growth.
  it("streams a 1 GiB-equivalent (a + b):half() into graft.save in bounded memory", function()
    local dir = H.tmpdir()
    H.write(dir .. "/save.lua", [[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local graft = require "graft"
local core = graft.core
local n = 1 << 28 -- float32 elements: a + b is 1 GiB as float32
local a = core.full({ n >> 12, 1 << 12 }, 1.5, "float32")
local b = core.full({ 1 << 12 }, 0.25, "float32") -- broadcast row
local loads, before = core.testing.expr_loads(), core.maxrss()
graft.save(arg[1], { x = (a + b):half() })
print(core.maxrss() - before, core.testing.expr_loads() - loads, before)
]])
    local p = io.popen("lua5.4 " .. dir .. "/save.lua " .. H.q(dir .. "/x.safetensors"))
    local out = p:read("a")
    assert.is_true(p:close())
    local grew, loads = out:match("^(%d+)%s+(%d+)")
    assert.equal("0", loads, out)
    assert.is_true(tonumber(grew) < 64 << 20, "peak RSS grew by " .. out)
    local m = graft.open(dir .. "/x.safetensors")
    local x = m.x
    assert.equal("float16", x.dtype)
    assert.same({ 1 << 16, 1 << 12 }, x.shape)
    local s = x:narrow(1, (1 << 16) - 1, 2):stats()
    assert.equal(1.75, s.min)
    assert.equal(1.75, s.max)
    os.remove(dir .. "/x.safetensors")
  end)
end)

describe("folding recipes (issue 12) against torch", function()
  local dir = H.tmpdir()
  -- One oracle run makes the inputs and torch's fused results.
  H.oracle([==[
import sys, torch
from safetensors.torch import save_file
from torch.nn.utils.fusion import fuse_conv_bn_eval
torch.manual_seed(0)
d = sys.argv[1]
conv = torch.nn.Conv2d(3, 8, 3)
bn = torch.nn.BatchNorm2d(8, eps=1e-3)
with torch.no_grad():
    bn.weight.uniform_(0.5, 2); bn.bias.normal_()
    bn.running_mean.normal_(); bn.running_var.uniform_(0.1, 3)
conv.eval(); bn.eval()
fused = fuse_conv_bn_eval(conv, bn)
lstm = torch.nn.LSTM(4, 5)
b = torch.randn(4 * 6)
save_file({"w": conv.weight.detach(), "b": conv.bias.detach(),
           "gamma": bn.weight.detach(), "beta": bn.bias.detach(),
           "mean": bn.running_mean, "var": bn.running_var,
           "fw": fused.weight.detach(), "fb": fused.bias.detach(),
           "bias_ih": lstm.bias_ih_l0.detach(), "bias_hh": lstm.bias_hh_l0.detach(),
           "bias_sum": (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach(),
           "tf_bias": b, "tf_bias_folded": torch.cat([b[:12], b[12:18] + 1.0, b[18:]])},
          d + "/in.safetensors")
x = torch.randn(2, 3, 9, 9)
torch.save({"x": x, "y": bn(conv(x)).detach()}, d + "/io.pt")
]==], dir)
  local m = graft.open(dir .. "/in.safetensors")

  it("sums bias_ih + bias_hh as torch does", function()
    assert.equal(m.bias_sum:bytes(), (m.bias_ih + m.bias_hh):bytes())
  end)

  it("folds TF1's forget_bias into the forget gate quarter", function()
    local b, h = m.tf_bias, 6
    local folded = core.cat({ b:narrow(1, 1, 2 * h), b:narrow(1, 2 * h + 1, h) + 1.0,
      b:narrow(1, 3 * h + 1, h) })
    assert.equal(m.tf_bias_folded:bytes(), folded:bytes())
  end)

  it("folds BatchNorm into the conv as fuse_conv_bn_eval does, proven by outputs", function()
    local eps = 1e-3
    local inv = (m.var + eps):rsqrt()
    local w = m.w * (m.gamma * inv):reshape(8, 1, 1, 1)
    local b = (m.b - m.mean) * inv * m.gamma + m.beta
    -- torch.rsqrt is an approximation that may differ from 1 / sqrt in
    -- the last bit: within one float32 ulp (2^-23 relative) of torch's
    assert.is_true(w:allclose(m.fw, 2 ^ -23, 0))
    assert.is_true(b:allclose(m.fb, 2 ^ -23, 1e-7))
    -- the form with a division: equal within float32 rounding
    local w2 = m.w * (m.gamma / (m.var + eps):sqrt()):reshape(8, 1, 1, 1)
    assert.is_true(w2:allclose(m.fw, 1e-6, 1e-7))
    graft.save(dir .. "/fused.safetensors", { weight = w, bias = b })
    local out = H.oracle([[
import sys, torch
from safetensors.torch import load_file
d = sys.argv[1]
f = load_file(d + "/fused.safetensors")
io = torch.load(d + "/io.pt")
conv = torch.nn.Conv2d(3, 8, 3)
conv.load_state_dict(f)
y = conv(io["x"]).detach()
print(float((y - io["y"]).abs().max()), float(io["y"].abs().max()))
]], dir)
    local diff, scale = out:match("(%S+) (%S+)")
    assert.is_true(tonumber(diff) <= 1e-5 * tonumber(scale), out)
  end)
end)

describe("arithmetic on GGUF block-quantised tensors", function()
  it("is refused with a hint to dequantise first; the dequantised tensor takes part", function()
    local q = graft.tensor(string.rep("\0", 34), "q8_0", { 32 })
    local ok, err = pcall(function() return q + q end)
    assert.is_false(ok)
    assert.matches("q8_0 tensors hold quantised blocks: dequantise first", err, 1, true)
    local s = q:float() + 1
    assert.are.equal("float32", s.dtype)
    assert.are.same(1, s:totable()[32])
  end)
end)
