// Renders the files the repository ships, keyed by their path from the repository root.
// Run through build.sh (`make mixin`): jsonnet -S -m <root> build.jsonnet
local manifest = import 'lib/manifest.libsonnet';
local mixin = import 'mixin.libsonnet';

local header(what) =
  '# GreenOps ' + what + ', generated from mixin/ by `make mixin`: do not edit, change the jsonnet.\n'
  + '# Parameters and how to change them: alerts/README.md. Runbooks: alerts/runbooks.md.\n';

{
  'alerts/greenops-alerts.yml': header('alerts') + manifest.yaml(mixin.prometheusAlerts),
  'alerts/greenops-rules.yml': header('recording rules (level:metric:operation)') + manifest.yaml(mixin.prometheusRules),
}
+ {
  ['dashboards/' + name]: manifest.json(mixin.grafanaDashboards[name]) + '\n'
  for name in std.objectFields(mixin.grafanaDashboards)
}
