// Renders the files the repository ships, keyed by their path from the repository root.
// Run through build.sh (`make mixin`): jsonnet -S -m <root> build.jsonnet
local g = import 'lib/grafana.libsonnet';
local mixin = import 'mixin.libsonnet';

local header(what) =
  '# GreenOps %s, generated from mixin/ by `make mixin`: do not edit, change the jsonnet.\n' % what
  + '# Parameters and how to change them: alerts/README.md. Runbooks: alerts/runbooks.md.\n';

local yaml(value) = std.manifestYamlDoc(value, indent_array_in_object=true, quote_keys=false) + '\n';

{
  'alerts/greenops-alerts.yml': header('alerts') + yaml(mixin.prometheusAlerts),
  'alerts/greenops-rules.yml': header('recording rules (level:metric:operation)') + yaml(mixin.prometheusRules),
}
+ {
  ['dashboards/' + name]: g.manifest(mixin.grafanaDashboards[name]) + '\n'
  for name in std.objectFields(mixin.grafanaDashboards)
}
