// GreenOps / Fleet overview: how much energy, money and CO2 idle machines waste, and where.
// Everything but the top-wasters table reads the group series (greenops_group_*_total,
// greenops_machines) and the recording rules made from them, which the collector serves in
// both metric modes: the dashboard works for any fleet size, and its totals include retired
// machines.
local g = import '../lib/grafana.libsonnet';
local p = import '../lib/promql.libsonnet';
local common = import 'common.libsonnet';

{
  grafanaDashboards+:: {
    local cfg = $._config,
    local c = common.new(cfg),
    local sum = common.sum,
    local labels = p.labels(cfg),

    // Per group (site, department) over the picked time range, replicas collapsed.
    local increase(metric, extra=[]) =
      p.perGroup(cfg, p.fmt('increase(%s{%s}[$__range])', [metric, c.groups]), extra),
    // Per group over the configured rate window (at least 4 heartbeats).
    local rate(metric) =
      p.perGroup(cfg, p.fmt('rate(%s{%s}[%s])', [metric, c.groups, cfg.rateWindow])),
    // Per machine over the picked time range: only for the per-machine panel.
    local machineIncrease(metric) =
      p.perMachine(cfg, p.fmt('increase(%s{%s}[$__range])', [metric, c.machines])),
    local recorded(record) =
      p.fmt('%s{%s}', [$.recordedName('department', record), c.recorded]),

    local money = {
      overrides: g.moneyOverrides(cfg.currencies),
    },
    local machineLink = {
      title: 'Machine detail',
      url: '/d/greenops-machine/greenops-machine-detail?var-machine_id=${__data.fields.machine_id}&' + c.queryParams,
    },

    'greenops-fleet.json': g.dashboard(
      cfg,
      'greenops-fleet',
      'GreenOps / Fleet overview',
      'How much energy, money and CO₂ idle machines waste, and where.',
      c.variables + [c.site(), c.department()],
      [
        [
          g.stat(
            'Idle ratio',
            'Share of observed powered-on time spent idle beyond the threshold, over the selected time range.',
            'percentunit',
            [g.target(
              p.fmt('%s / %s', [
                sum([], increase('greenops_group_idle_seconds_total')),
                sum([], increase('greenops_group_observed_seconds_total')),
              ]),
              instant=true,
            )],
          ) + { decimals: 1 },
          g.stat(
            'Wasted energy',
            'Energy consumed by machines idle beyond the threshold, over the selected time range.',
            'kwatth',
            [g.target(p.fmt('%s / 3.6e6', sum([], increase('greenops_group_idle_energy_joules_total'))), instant=true)],
          ) + { decimals: 2 },
          g.stat(
            'Wasted money',
            'Cost of the wasted energy, per currency (amounts in different currencies are never added).',
            g.currencyUnit(cfg.defaultCurrency),
            [g.target(
              sum(['currency'], increase('greenops_group_idle_energy_cost_total', ['currency'])),
              '{{currency}}',
              instant=true,
            )],
          ) + money + { decimals: 2 },
          g.stat(
            'Wasted CO₂e',
            'CO₂-equivalent emitted for the wasted energy, over the selected time range.',
            'masskg',
            [g.target(p.fmt('%s / 1000', sum([], increase('greenops_group_idle_co2_grams_total'))), instant=true)],
          ) + { decimals: 2 },
        ],
        [
          g.stat(
            'Avoidable energy',
            'What sleeping during the waste would have saved (idle minus sleep watts), over the selected time range.',
            'kwatth',
            [g.target(p.fmt('%s / 3.6e6', sum([], increase('greenops_group_avoidable_energy_joules_total'))), instant=true)],
          ) + { decimals: 2 },
          g.stat(
            'Avoidable money',
            'Cost of the avoidable energy, per currency.',
            g.currencyUnit(cfg.defaultCurrency),
            [g.target(
              sum(['currency'], increase('greenops_group_avoidable_energy_cost_total', ['currency'])),
              '{{currency}}',
              instant=true,
            )],
          ) + money + { decimals: 2 },
          g.stat(
            'After-hours share of the waste',
            "Share of the wasted energy incurred outside the sites' business hours, over the selected time range.",
            'percentunit',
            [g.target(
              p.fmt('%s / %s', [
                sum([], increase('greenops_group_after_hours_idle_energy_joules_total')),
                sum([], increase('greenops_group_idle_energy_joules_total')),
              ]),
              instant=true,
            )],
          ) + { decimals: 1 },
          g.stat(
            'Time with idle data',
            'Coverage: share of observed time for which the agents reported input idle time (the rest is unknown, never counted as waste).',
            'percentunit',
            [g.target(
              p.fmt('1 - %s / %s', [
                sum([], increase('greenops_group_unknown_seconds_total')),
                sum([], increase('greenops_group_observed_seconds_total')),
              ]),
              instant=true,
            )],
          ) + { decimals: 1 },
        ],
        [
          g.timeseries(
            'Avoidable and after-hours idle power',
            p.fmt('Power sleep would have saved (%s) and idle power outside business hours (%s), fleet-wide.', [
              $.recordedName('department', 'greenops_machine_avoidable_power_watts'),
              $.recordedName('department', 'greenops_machine_after_hours_idle_power_watts'),
            ]),
            'watt',
            [
              g.target(sum([], recorded('greenops_machine_avoidable_power_watts')), 'avoidable'),
              g.target(sum([], recorded('greenops_machine_after_hours_idle_power_watts')), 'after hours idle'),
            ],
          ),
          g.timeseries(
            'Unobserved gaps by site',
            'Coverage: time between heartbeats too far apart to count (machines off or unreachable), in hours per hour.',
            'percentunit',
            [g.target(p.fmt('%s / 3600', sum(['site'], p.perGroup(cfg, p.fmt('increase(greenops_group_gap_seconds_total{%s}[1h])', c.groups)))), '{{site}}')],
          ),
        ],
        [
          g.timeseries(
            'Idle power by site',
            p.fmt('Power drawn by machines idle beyond the threshold, from the %s recording rule (a %s window: at least four heartbeats).', [
              $.recordedName('department', 'greenops_machine_idle_power_watts'),
              cfg.rateWindow,
            ]),
            'watt',
            [g.target(sum(['site'], recorded('greenops_machine_idle_power_watts')), '{{site}}')],
          ),
          g.timeseries(
            'Idle ratio by site',
            p.fmt('Share of observed time spent idle, per site, over a %s window.', cfg.rateWindow),
            'percentunit',
            [g.target(
              p.fmt('%s / %s', [
                sum(['site'], rate('greenops_group_idle_seconds_total')),
                sum(['site'], rate('greenops_group_observed_seconds_total')),
              ]),
              '{{site}}',
            )],
          ) + { min: 0, max: 1 },
        ],
        [
          g.timeseries(
            'Wasted energy per day',
            'Idle energy per day.',
            'kwatth',
            [g.target(
              p.fmt('%s / 3.6e6', sum([], p.perGroup(cfg, p.fmt('increase(greenops_group_idle_energy_joules_total{%s}[1d])', c.groups)))),
              'wasted kWh',
              interval='1d',
            )],
          ) + { custom: { drawStyle: 'bars', fillOpacity: 80 } },
          g.panel(
            'piechart',
            'Machines by status',
            'Current status of every machine (live machines, by where they are now): active, idle, offline or unknown.',
            'short',
            [g.target(
              sum(['status'], p.perGroup(cfg, p.fmt('greenops_machines{%s}', c.groups), ['status'])),
              '{{status}}',
              instant=true,
            )],
            w=6,
          ) + { options: { reduceOptions: { calcs: ['lastNotNull'], values: false }, pieType: 'donut' } },
          g.panel(
            'bargauge',
            'Idle ratio by department',
            'Share of observed time spent idle, per department, over the selected time range.',
            'percentunit',
            [g.target(
              p.fmt('%s / %s', [
                sum(['department'], increase('greenops_group_idle_seconds_total')),
                sum(['department'], increase('greenops_group_observed_seconds_total')),
              ]),
              '{{department}}',
              instant=true,
            )],
            w=6,
          ) + {
            min: 0,
            max: 1,
            options: {
              orientation: 'horizontal',
              displayMode: 'gradient',
              reduceOptions: { calcs: ['lastNotNull'], values: false },
            },
          },
        ],
        [
          g.panel(
            'table',
            'Top wasting departments',
            'The ten departments (of a site) whose machines wasted the most energy over the selected time range, retired machines included; figures stay with the department where they were incurred.',
            'kwatth',
            [g.target(
              p.fmt('topk(10, %s / 3.6e6)', sum(['site', 'department'], increase('greenops_group_idle_energy_joules_total'))),
              instant=true,
              format='table',
            )],
            h=9,
          ) + {
            decimals: 2,
            transformations: [{
              id: 'organize',
              options: {
                excludeByName: { Time: true },
                indexByName: { site: 0, department: 1, Value: 2 },
                renameByName: { Value: 'Wasted energy' },
              },
            }],
            options: { showHeader: true, sortBy: [{ displayName: 'Wasted energy', desc: true }] },
          },
          common.perMachine(g.panel(
            'table',
            'Top wasters',
            'The ten machines that wasted the most energy over the selected time range. Click a row for its machine dashboard.',
            'kwatth',
            [g.target(
              p.withInfo(
                cfg,
                p.fmt('topk(10, %s / 3.6e6)', sum(labels.machineKey, machineIncrease('greenops_machine_idle_energy_joules_total'))),
                c.raw,
                ['hostname', 'site', 'department'],
              ),
              instant=true,
              format='table',
            )],
            h=9,
          )) + {
            decimals: 3,
            links: [machineLink],
            transformations: [{
              id: 'organize',
              options: {
                excludeByName: { Time: true, job: true },
                indexByName: { hostname: 0, site: 1, department: 2, machine_id: 3, Value: 4 },
                renameByName: { Value: 'Wasted energy' },
              },
            }],
            options: { showHeader: true, sortBy: [{ displayName: 'Wasted energy', desc: true }] },
          },
        ],
        [
          g.timeseries(
            'Wasted cost per hour by site',
            p.fmt('Cost of idle energy per hour, from the %s recording rule.', $.recordedName('department', 'greenops_machine_idle_energy_cost_per_hour')),
            g.currencyUnit(cfg.defaultCurrency),
            [g.target(
              sum(['site', 'currency'], recorded('greenops_machine_idle_energy_cost_per_hour')),
              '{{site}} ({{currency}})',
            )],
          ) + money + { decimals: 3 },
          g.timeseries(
            'Wasted CO₂e per hour by site',
            p.fmt('CO₂-equivalent of idle energy in grams per hour, from the %s recording rule.', $.recordedName('department', 'greenops_machine_idle_co2_grams_per_hour')),
            'si:g/h',
            [g.target(sum(['site'], recorded('greenops_machine_idle_co2_grams_per_hour')), '{{site}}')],
          ),
        ],
      ],
    ),
  },
}
