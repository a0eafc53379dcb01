// GreenOps / Machine detail: one machine, picked by machine_id (the picker shows hostnames).
// It reads per-machine series only, so it needs the collector's per-machine mode.
local g = import '../lib/grafana.libsonnet';
local p = import '../lib/promql.libsonnet';
local common = import 'common.libsonnet';

{
  grafanaDashboards+:: {
    local cfg = $._config,
    local c = common.new(cfg),
    local sum = common.sum,
    local machine = p.matchers([c.raw, 'machine_id="$machine_id"']),

    local series(metric, extra=[]) = p.perMachine(cfg, p.fmt('%s{%s}', [metric, machine]), extra),
    local increase(metric, extra=[]) =
      p.perMachine(cfg, p.fmt('increase(%s{%s}[$__range])', [metric, machine]), extra),
    local rate(metric, extra=[]) =
      p.perMachine(cfg, p.fmt('rate(%s{%s}[%s])', [metric, machine, cfg.rateWindow]), extra),
    local withHostname(expr) = p.withInfo(cfg, expr, c.raw),
    local money = { overrides: g.moneyOverrides(cfg.currencies) },
    local window = p.fmt('over a %s window (at least four heartbeats)', cfg.rateWindow),

    'greenops-machine.json': g.dashboard(
      cfg,
      'greenops-machine',
      'GreenOps / Machine detail',
      'One machine: status timeline, input idle time, CPU and memory, power and waste. ' + common.perMachineNote,
      c.variables + [
        c.site('greenops_machine_info'),
        // Values are machine ids, texts the hostnames (label order in query_result is sorted).
        g.queryVariable(
          'machine_id',
          'Machine',
          p.fmt('query_result(max by (hostname, machine_id) (greenops_machine_info{%s, site=~"$site"}))', c.raw),
          multi=false,
          includeAll=false,
          regex='/hostname="(?<text>[^"]*)".*machine_id="(?<value>[^"]*)"/',
        ),
      ],
      // Every panel reads per-machine series, and its description says so.
      [[common.perMachine(panel) for panel in row] for row in [
        [
          g.panel(
            'table',
            'Machine',
            'What the collector knows about the machine (greenops_machine_info).',
            'none',
            [g.target(
              p.fmt('max by (hostname, site, department, os, os_version, agent_version, power_profile) (greenops_machine_info{%s})', machine),
              instant=true,
              format='table',
            )],
            h=4,
          ) + {
            transformations: [{
              id: 'organize',
              options: {
                excludeByName: { Time: true, Value: true },
                indexByName: { hostname: 0, site: 1, department: 2, os: 3, os_version: 4, agent_version: 5, power_profile: 6 },
              },
            }],
            options: { showHeader: true },
          },
          g.stat(
            'Last heartbeat',
            'When the collector last received a heartbeat from this machine.',
            'dateTimeFromNow',
            [g.target(p.fmt('%s * 1000', series('greenops_machine_last_heartbeat_timestamp_seconds')), instant=true)],
          ),
          g.stat(
            'Idle ratio',
            'Share of observed powered-on time spent idle beyond the threshold, over the selected time range.',
            'percentunit',
            [g.target(
              p.fmt('%s / %s', [increase('greenops_machine_idle_seconds_total'), increase('greenops_machine_observed_seconds_total')]),
              instant=true,
            )],
          ) + { decimals: 1 },
        ],
        [
          g.panel(
            'state-timeline',
            'Status',
            "The machine's status over time: active, idle, offline or unknown.",
            'none',
            [g.target(p.fmt('max by (status) (greenops_machine_status{%s}) == 1', machine), '{{status}}')],
            w=24,
            h=5,
          ) + { options: { mergeValues: true, showValue: 'never' } },
        ],
        [
          g.timeseries(
            'Seconds since last input',
            'Time since the last keyboard or mouse input, as last reported by the agent.',
            's',
            [g.target(withHostname(series('greenops_machine_input_idle_seconds')), '{{hostname}}')],
          ),
          g.timeseries(
            'CPU and memory',
            'CPU and memory usage, as last reported by the agent.',
            'percentunit',
            [
              g.target(withHostname(series('greenops_machine_cpu_usage_ratio')), 'CPU'),
              g.target(withHostname(series('greenops_machine_memory_usage_ratio')), 'memory'),
            ],
          ) + { min: 0, max: 1 },
        ],
        [
          g.timeseries(
            'Power',
            p.fmt('Estimated power and the part of it drawn while idle beyond the threshold, %s.', window),
            'watt',
            [
              g.target(withHostname(rate('greenops_machine_energy_joules_total')), 'estimated power'),
              g.target(withHostname(rate('greenops_machine_idle_energy_joules_total')), 'of which idle'),
            ],
            w=8,
          ),
          g.timeseries(
            'Wasted cost per hour',
            p.fmt('Cost of the idle energy per hour, %s.', window),
            g.currencyUnit(cfg.defaultCurrency),
            [g.target(
              p.fmt('%s * 3600', sum(['currency'], rate('greenops_machine_idle_energy_cost_total', ['currency']))),
              '{{currency}}',
            )],
            w=8,
          ) + money + { decimals: 4 },
          g.timeseries(
            'Wasted CO₂e per hour',
            p.fmt('CO₂-equivalent of the idle energy in grams per hour, %s.', window),
            'si:g/h',
            [g.target(p.fmt('%s * 3600', rate('greenops_machine_idle_co2_grams_total')), 'idle CO₂e')],
            w=8,
          ),
        ],
        [
          g.stat(
            'Wasted energy',
            'Energy consumed while idle beyond the threshold, over the selected time range.',
            'kwatth',
            [g.target(p.fmt('%s / 3.6e6', increase('greenops_machine_idle_energy_joules_total')), instant=true)],
            w=8,
          ) + { decimals: 3 },
          g.stat(
            'Wasted money',
            'Cost of the wasted energy, per currency, over the selected time range.',
            g.currencyUnit(cfg.defaultCurrency),
            [g.target(
              sum(['currency'], increase('greenops_machine_idle_energy_cost_total', ['currency'])),
              '{{currency}}',
              instant=true,
            )],
            w=8,
          ) + money + { decimals: 3 },
          g.stat(
            'Wasted CO₂e',
            'CO₂-equivalent emitted for the wasted energy, over the selected time range.',
            'massg',
            [g.target(increase('greenops_machine_idle_co2_grams_total'), instant=true)],
            w=8,
          ) + { decimals: 1 },
        ],
      ]],
    ),
  },
}
