-- graft.json: Python-compatible JSON output (json.dumps with sorted keys),
-- used for index files and HDF5 layouts. (Moved from map_spec.lua.)
local json = require "graft.json"
local H = require "helper"

describe("graft.json", function()
  it("encode_pretty is Python's json.dumps(indent=2, sort_keys=True)", function()
    local v = {
      name = "h\u{e9}llo w\u{f6}rld \u{2713} \u{1F600}",
      list = { 1, 2.5, -3, 1e-7, 1e21, 0.1, 123456789012, -0.0, 1e16, 2 ^ 63 },
      nested = {
        deep = { ["\u{43a}\u{43b}\u{44e}\u{447}"] = "\u{437}\u{43d}\u{430}\u{447}",
                 empty_obj = {}, empty_arr = setmetatable({}, json.array_mt),
                 t = true, f = false, arr = { { 1, { 2 } }, {} } },
        ["tab\tnew\nline"] = "q\"uote\\back/slash\1\127\u{80}",
      },
      Zed = 1, B = 2, ["\u{e9}"] = 3,
    }
    local py = [==[
import sys, json
v = {
  "name": "h\u00e9llo w\u00f6rld \u2713 \U0001F600",
  "list": [1, 2.5, -3, 1e-7, 1e21, 0.1, 123456789012, -0.0, 1e16, 2.0 ** 63],
  "nested": {
    "deep": {"\u043a\u043b\u044e\u0447": "\u0437\u043d\u0430\u0447",
             "empty_obj": {}, "empty_arr": [], "t": True, "f": False,
             "arr": [[1, [2]], {}]},
    "tab\tnew\nline": "q\"uote\\back/slash\x01\x7f\x80",
  },
  "Zed": 1, "B": 2, "\u00e9": 3,
}
if sys.argv[1] == "pretty":
    sys.stdout.write(json.dumps(v, indent=2, sort_keys=True) + "\n")
else:
    sys.stdout.write(json.dumps(v, sort_keys=True, separators=(",", ":")) + "\n")
]==]
    assert.are.equal(H.py(py, "pretty"), json.encode_pretty(v) .. "\n")
    assert.are.equal(H.py(py, "compact"), json.encode(v) .. "\n")
    local back = json.decode(json.encode(v))
    assert.are.equal(v.name, back.name)
    assert.are.equal(v.nested["tab\tnew\nline"], back.nested["tab\tnew\nline"])
    H.cleanup()
  end)

  it("decodes numbers beyond the integer range as floats, integers as integers", function()
    -- Files carry such numbers (a config's 1e21); converting them to an
    -- integer before checking the range was undefined behaviour (clang's
    -- UBSan, make asan-clang).
    local v = json.decode("[1e21, -1e21, 9.3e18, -9223372036854775808, 1e300, 1e999, 42, -7.0, 9007199254740991]")
    local want = { 1e21, -1e21, 9.3e18, -2.0 ^ 63, 1e300, math.huge, 42, -7, 9007199254740991 }
    local kind = { "float", "float", "float", "float", "float", "float", "integer", "integer", "integer" }
    for i = 1, #want do
      assert.are.equal(want[i], v[i])
      assert.are.equal(kind[i], math.type(v[i]), "element " .. i)
    end
  end)

  it("refuses NaN and infinities", function()
    local err = H.raises(function() json.encode({ x = 0 / 0 }) end)
    assert.truthy(err:find("^graft: cannot encode"), err)
    err = H.raises(function() json.encode({ math.huge }) end)
    assert.truthy(err:find("^graft: cannot encode inf"), err)
  end)
end)
