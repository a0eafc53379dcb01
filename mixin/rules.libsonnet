// Recording rules: fleet, site and department aggregates, named level:metric:operation. They
// read only the group counters (greenops_group_*_total{site,department}), which the collector
// serves whatever `metrics.per_machine` says, so they work with and without per-machine
// series, include retired machines and never drop when a machine moves. Each group series is
// first collapsed over collector replicas (`max by` the group's labels), then summed, so two
// scraped replicas never double a total. The record names keep their `greenops_machine_…`
// metric part: they are what existing queries and dashboards use.
local p = import 'lib/promql.libsonnet';

{
  // The aggregates, as data: each entry becomes <level>:<record>:<operation><window> for every
  // level and window. To record a new counter, add an entry here (and a promtool test).
  //   metric:   a group counter; rate() of it per second
  //   ratio:    [numerator, denominator] counters instead of `metric`
  //   factor:   multiplies the per-second rate (3600: per hour)
  //   extraBy:  labels kept besides the level's (money is never summed across currencies)
  //   windows:  range windows; `rate` is the configured one (>= 4 heartbeats)
  greenopsRecordedRates:: [
    {
      record: 'greenops_idle_ratio',
      ratio: ['greenops_group_idle_seconds_total', 'greenops_group_observed_seconds_total'],
      windows: ['rate', '1h'],
    },
    {
      record: 'greenops_machine_power_watts',
      metric: 'greenops_group_energy_joules_total',  // joules per second are watts
      windows: ['rate'],
    },
    {
      record: 'greenops_machine_idle_power_watts',
      metric: 'greenops_group_idle_energy_joules_total',
      windows: ['rate'],
    },
    {
      record: 'greenops_machine_idle_energy_cost_per_hour',
      metric: 'greenops_group_idle_energy_cost_total',
      factor: 3600,
      extraBy: ['currency'],
      windows: ['rate', '1h'],
    },
    {
      record: 'greenops_machine_idle_co2_grams_per_hour',
      metric: 'greenops_group_idle_co2_grams_total',
      factor: 3600,
      windows: ['rate', '1h'],
    },
    // What sleeping during the waste would have saved (idle minus sleep watts).
    {
      record: 'greenops_machine_avoidable_power_watts',
      metric: 'greenops_group_avoidable_energy_joules_total',
      windows: ['rate'],
    },
    {
      record: 'greenops_machine_avoidable_energy_cost_per_hour',
      metric: 'greenops_group_avoidable_energy_cost_total',
      factor: 3600,
      extraBy: ['currency'],
      windows: ['rate'],
    },
    // The part of the idle power outside the sites' business hours.
    {
      record: 'greenops_machine_after_hours_idle_power_watts',
      metric: 'greenops_group_after_hours_idle_energy_joules_total',
      windows: ['rate'],
    },
    // Coverage: the share of observed time without idle data.
    {
      record: 'greenops_unknown_ratio',
      ratio: ['greenops_group_unknown_seconds_total', 'greenops_group_observed_seconds_total'],
      windows: ['1h'],
    },
  ],

  // The levels, finest last.
  greenopsRecordingLevels:: ['fleet', 'site', 'department'],

  // The name of a recorded series: recordedName('site', 'greenops_machine_idle_power_watts')
  // is "site:greenops_machine_idle_power_watts:rate4m" with the default window.
  recordedName(level, record, window='rate')::
    local entry = std.filter(function(e) e.record == record, $.greenopsRecordedRates)[0];
    local w = if window == 'rate' then $._config.rateWindow else window;
    p.fmt('%s:%s:%srate%s', [level, record, if std.objectHas(entry, 'ratio') then 'ratio_' else '', w]),

  prometheusRules+:: {
    local cfg = $._config,
    local sel = cfg.greenopsSelector,
    local labels = p.labels(cfg),

    local rate(metric, window, extra) =
      p.perGroup(cfg, p.fmt('rate(%s{%s}[%s])', [metric, sel, window]), extra),

    local rule(entry, level, window) =
      local w = if window == 'rate' then cfg.rateWindow else window;
      local extra = std.get(entry, 'extraBy', []);
      local by = p.by(labels[level] + extra);
      {
        record: $.recordedName(level, entry.record, window),
        expr:
          if std.objectHas(entry, 'ratio') then
            p.fmt('sum %s (%s)\n/\nsum %s (%s)\n', [
              by,
              rate(entry.ratio[0], w, extra),
              by,
              rate(entry.ratio[1], w, extra),
            ])
          else
            p.fmt('sum %s (\n  %s\n)%s\n', [
              by,
              rate(entry.metric, w, extra),
              if std.get(entry, 'factor', 1) == 1 then '' else p.fmt(' * %s', p.num(entry.factor)),
            ]),
      },

    groups+: [
      {
        name: 'greenops-recording',
        interval: '1m',
        rules: [
          rule(entry, level, window)
          for entry in $.greenopsRecordedRates
          for window in entry.windows
          for level in $.greenopsRecordingLevels
        ],
      },
    ],
  },
}
