// de_std.libsonnet: helpers for channel configurations.
//
//   local de_std = import 'de_std.libsonnet';
//   local a = import 'channel_a.jsonnet';
//   local b = import 'channel_b.jsonnet';
//   {
//     sources: de_std.sources_from([a, b]),
//     transforms: de_std.transforms_from([a, b]),
//     publishers: de_std.publishers_from([a, b]),
//     ...
//   }
//
// Each function merges one block of several channel configs.  A key present in two
// configs must have the same value in both (else evaluation fails naming the key);
// sources_from also leaves out sources whose parameters contain 'source_channel'
// (sources that read another channel's products belong to that channel only).

local block_of(config, block) =
  if std.isObject(config) && std.objectHas(config, block) then config[block] else {};

local merge_block(configs, block, keep) =
  std.foldl(
    function(merged, config)
      local entries = block_of(config, block);
      merged + {
        [key]:
          if std.objectHas(merged, key) && merged[key] != entries[key]
          then error "de_std.%s_from: key '%s' is defined twice with different values" % [block, key]
          else entries[key]
        for key in std.objectFields(entries)
        if keep(entries[key])
      },
    configs,
    {}
  );

local keep_all(entry) = true;

local not_from_other_channel(entry) =
  !(std.isObject(entry)
    && std.objectHas(entry, 'parameters')
    && std.isObject(entry.parameters)
    && std.objectHas(entry.parameters, 'source_channel'));

{
  sources_from(configs):: merge_block(configs, 'sources', not_from_other_channel),
  transforms_from(configs):: merge_block(configs, 'transforms', keep_all),
  publishers_from(configs):: merge_block(configs, 'publishers', keep_all),
}
