// Alerts. Each has a CamelCase name, a `severity` label and summary / description /
// runbook_url annotations; alerts/runbooks.md has a section per alert (the anchor is the
// lower-case name) and alerts/tests/ a "not yet" and a "fires" case.
// Fleet alerts read the group series (greenops_group_*, greenops_machines) and the recording
// rules, which the collector serves in both metric modes; only GreenOpsMachineIdleTooLong is
// about one machine and needs per-machine mode (its runbook says so).
local p = import 'lib/promql.libsonnet';

// "5m" -> "5 minutes", "1h" -> "an hour", "2h" -> "2 hours".
local spoken(duration) =
  local n = std.parseInt(std.substr(duration, 0, std.length(duration) - 1));
  local unit = { s: 'second', m: 'minute', h: 'hour', d: 'day' }[std.substr(duration, std.length(duration) - 1, 1)];
  if n == 1 then (if unit == 'hour' then 'an hour' else 'a ' + unit)
  else std.toString(n) + ' ' + unit + 's';

// 14400 -> "4 hours", 5400 -> "90 minutes".
local spokenSeconds(seconds) =
  spoken(p.durationString(seconds));

local percent(ratio) = p.num(ratio * 100) + ' %';
local clock(hour) = (if hour < 10 then '0' else '') + std.toString(hour) + ':00';

{
  prometheusAlerts+:: {
    local cfg = $._config,
    local sel = cfg.greenopsSelector,
    local labels = p.labels(cfg),
    local w = cfg.collectorRateWindow,
    // Per collector process: these counters are the process's own, summing replicas is right.
    local byInstance = p.by(labels.fleet + ['instance']),

    local alert(name, severity, expr, duration, summary, description) = {
      alert: name,
      expr: expr,
      'for': duration,
      labels: { severity: severity },
      annotations: {
        summary: summary,
        description: description,
        runbook_url: p.fmt(cfg.runbookURLPattern, std.asciiLower(name)),
      },
    },

    // The fleet size gauge (greenops_machines{site,department,status}, served in both metric
    // modes) of one status, or all: replicas collapsed per group and status, summed per site.
    local machines(status, offset='') =
      p.fmt('sum %s (%s)', [
        p.by(labels.site),
        p.perGroup(cfg, p.fmt('greenops_machines{%s}%s', [
          p.matchers([sel, if status == '' then '' else p.fmt('status="%s"', status)]),
          if offset == '' then '' else ' offset ' + offset,
        ]), ['status']),
      ]),
    local newlyOffline =
      p.fmt('(\n  %s\n  - %s\n)', [machines('offline'), machines('offline', cfg.agentsStoppedWindow)]),

    local night =
      if cfg.nightStartHourUTC > cfg.nightEndHourUTC
      then p.fmt('(hour() >= %s or hour() < %s)', [cfg.nightStartHourUTC, cfg.nightEndHourUTC])
      else p.fmt('(hour() >= %s and hour() < %s)', [cfg.nightStartHourUTC, cfg.nightEndHourUTC]),

    groups+: [
      {
        name: 'greenops-collector',
        rules: [
          alert(
            'GreenOpsCollectorDown',
            'critical',
            p.fmt('up{%s} == 0', sel),
            '5m',
            'GreenOps collector {{ $labels.instance }} is down',
            'Prometheus has not been able to scrape {{ $labels.instance }} for 5 minutes; agents are spooling heartbeats and no idle waste is being accounted.',
          ),
          alert(
            'GreenOpsCollectorAbsent',
            'critical',
            p.fmt('absent(up{%s})', sel),
            '5m',
            'No GreenOps collector is being scraped',
            p.fmt('For 5 minutes Prometheus has had no target matching {%s}: the scrape job is missing or renamed, or service discovery finds no collector. Nothing is accounted and every other GreenOps alert is blind.', sel),
          ),
          alert(
            'GreenOpsIngestRejectionsHigh',
            'warning',
            p.fmt(|||
              sum %(by)s (rate(greenops_heartbeats_total{%(sel)s}[%(w)s]))
              /
              sum %(by)s (rate(greenops_heartbeats_total{%(all)s}[%(w)s]))
              > %(t)s
            |||, {
              by: byInstance,
              sel: p.matchers([sel, 'result="rejected"']),
              all: sel,
              w: w,
              t: p.num(cfg.ingestRejectedRatioThreshold),
            }),
            '15m',
            'GreenOps collector {{ $labels.instance }} rejects {{ $value | humanizePercentage }} of heartbeats',
            p.fmt('More than %s of heartbeats received by {{ $labels.instance }} were rejected (invalid bodies or agent clocks ahead of the server) for 15 minutes.', percent(cfg.ingestRejectedRatioThreshold)),
          ),
          alert(
            'GreenOpsIngestCommitSlow',
            'warning',
            // The p99 of a handful of commits is the slowest of them: only alert when there
            // are enough commits for the quantile to mean something.
            p.fmt(|||
              histogram_quantile(0.99, sum %(le)s (rate(greenops_ingest_commit_duration_seconds_bucket{%(sel)s}[%(w)s])))
              > %(t)s
              and
              sum %(by)s (rate(greenops_ingest_commit_duration_seconds_count{%(sel)s}[%(w)s]))
              > %(rate)s
            |||, {
              le: p.by(labels.fleet + ['instance', 'le']),
              by: byInstance,
              sel: sel,
              w: w,
              t: p.num(cfg.commitSlowP99Seconds),
              rate: p.num(cfg.commitSlowMinRatePerSecond),
            }),
            '10m',
            'GreenOps commits on {{ $labels.instance }} are slow (p99 {{ $value | humanizeDuration }})',
            p.fmt('The 99th percentile group-commit duration on {{ $labels.instance }} has been above %s s for 10 minutes, with more than %s commits per second; heartbeats wait longer and agents may time out and spool.', [
              p.num(cfg.commitSlowP99Seconds),
              p.num(cfg.commitSlowMinRatePerSecond),
            ]),
          ),
          alert(
            'GreenOpsMetricsScrapeSlow',
            'warning',
            p.fmt('scrape_duration_seconds{%s} > %s', [sel, p.num(cfg.scrapeSlowSeconds)]),
            '15m',
            'Scraping GreenOps on {{ $labels.instance }} takes {{ $value | humanizeDuration }}',
            p.fmt('The /metrics scrape of {{ $labels.instance }} has taken more than %s s for 15 minutes; with a large fleet raise scrape_timeout and scrape_interval for this job.', p.num(cfg.scrapeSlowSeconds)),
          ),
        ],
      },
      {
        name: 'greenops-fleet',
        rules: [
          alert(
            'GreenOpsMachineIdleTooLong',
            'info',
            p.fmt(|||
              (
                %(idle)s > %(t)s
                unless %(on)s
                %(offline)s == 1
              )
              * %(info)s
            |||, {
              idle: p.perMachine(cfg, p.fmt('greenops_machine_input_idle_seconds{%s}', sel)),
              t: p.num(cfg.machineIdleTooLongSeconds),
              on: p.on(labels.machineKey),
              offline: p.perMachine(cfg, p.fmt('greenops_machine_status{%s}', p.matchers([sel, 'status="offline"']))),
              info: p.infoJoin(cfg, sel),
            }),
            '30m',
            '{{ $labels.hostname }} has been idle for {{ $value | humanizeDuration }}',
            p.fmt('Machine {{ $labels.hostname }} ({{ $labels.machine_id }}, site {{ $labels.site }}, department {{ $labels.department }}) is powered on and has had no keyboard or mouse input for more than %s.', spokenSeconds(cfg.machineIdleTooLongSeconds)),
          ),
          alert(
            'GreenOpsMachinesOnOvernight',
            'warning',
            p.fmt(|||
              %(idle)s > %(n)s
              and on () %(night)s
            |||, {
              idle: machines('idle'),
              n: p.num(cfg.overnightIdleMachinesPerSite),
              night: night,
            }),
            '1h',
            '{{ $value }} machines at site {{ $labels.site }} are on and idle overnight',
            p.fmt('More than %s machines at site {{ $labels.site }} have been powered on but idle during night hours (%s-%s UTC) for an hour.', [
              p.num(cfg.overnightIdleMachinesPerSite),
              clock(cfg.nightStartHourUTC),
              clock(cfg.nightEndHourUTC),
            ]),
          ),
          alert(
            'GreenOpsFleetIdleRatioHigh',
            'warning',
            p.fmt('%s > %s', [$.recordedName('fleet', 'greenops_idle_ratio', '1h'), p.num(cfg.fleetIdleRatioThreshold)]),
            '2h',
            'The fleet is idle {{ $value | humanizePercentage }} of its powered-on time',
            p.fmt('Over the last hour more than %s of the observed powered-on time of all machines was idle beyond the threshold, for 2 hours.', percent(cfg.fleetIdleRatioThreshold)),
          ),
          alert(
            'GreenOpsIdleEnergyBudgetExceeded',
            'warning',
            // 1 kWh = 3.6e6 J.
            p.fmt(|||
              sum %(by)s (
                %(idle)s
              ) / 3.6e6 > %(t)s
            |||, {
              by: p.by(labels.site),
              idle: p.perGroup(cfg, p.fmt('increase(greenops_group_idle_energy_joules_total{%s}[1d])', sel)),
              t: p.num(cfg.idleEnergyBudgetKWhPerSiteDay),
            }),
            '15m',
            'Site {{ $labels.site }} wasted {{ $value | printf "%.1f" }} kWh in idle machines in the last 24 hours',
            p.fmt('The idle energy of site {{ $labels.site }} over the last 24 hours is above its budget of %s kWh.', p.num(cfg.idleEnergyBudgetKWhPerSiteDay)),
          ),
          alert(
            'GreenOpsAgentsStopped',
            'warning',
            p.fmt(|||
              %(new)s > %(n)s
              and
              %(new)s / %(all)s > %(ratio)s
            |||, {
              new: newlyOffline,
              all: machines(''),
              n: p.num(cfg.agentsStoppedMinMachines),
              ratio: p.num(cfg.agentsStoppedMinRatio),
            }),
            '5m',
            p.fmt('{{ $value }} machines at site {{ $labels.site }} stopped reporting within %s', spoken(cfg.agentsStoppedWindow)),
            'Many machines at site {{ $labels.site }} went offline at once. That is rarely people switching off; suspect the network, a proxy, or an agent update.',
          ),
        ],
      },
    ],
  },
}
