-- graft.layouts: named layout changes for map recipes (numpy's
-- transpose(3,2,0,1) is permute(4,3,1,2) here). graft.layouts is this
-- table: entries added to it are seen by graft.map.

return {
  t = function(t) return t:t() end,
  hwio_to_oihw = function(t) return t:permute(4, 3, 1, 2) end,
  oihw_to_hwio = function(t) return t:permute(3, 4, 2, 1) end,
  hwoi_to_oihw = function(t) return t:permute(3, 4, 1, 2) end,
  dense_tf_to_torch = function(t) return t:t() end,
  dense_torch_to_tf = function(t) return t:t() end,
}
