// The GreenOps monitoring mixin: Prometheus alerts and recording rules and Grafana dashboards,
// generated from one configuration (`_config`, see config.libsonnet). Use it like node-mixin:
//
//   local greenops = (import 'mixin.libsonnet') + { _config+:: { selector: 'job="greenops"' } };
//   greenops.prometheusAlerts   // { groups: [...] }, a Prometheus rule file
//   greenops.prometheusRules    // { groups: [...] }, a Prometheus rule file
//   greenops.grafanaDashboards  // { 'greenops-fleet.json': {...}, ... }
//
// build.jsonnet renders the files the repository ships (alerts/*.yml, dashboards/*.json);
// run `make mixin` after editing anything here.
(import 'config.libsonnet')
+ (import 'rules.libsonnet')
+ (import 'alerts.libsonnet')
+ (import 'dashboards/dashboards.libsonnet')
