// GreenOps / Collector health: the collector processes themselves. Their counters are per
// process (each heartbeat reaches one replica), so these rates are summed over instances;
// only the fleet gauge at the bottom is served identically by every replica and collapsed.
local g = import '../lib/grafana.libsonnet';
local p = import '../lib/promql.libsonnet';
local common = import 'common.libsonnet';

{
  grafanaDashboards+:: {
    local cfg = $._config,
    local c = common.new(cfg),

    local rate(metric) = p.fmt('rate(%s{%s}[$__rate_interval])', [metric, c.raw]),
    local quantile(q, metric, by=[]) =
      p.fmt('histogram_quantile(%s, sum %s (%s))', [p.num(q), p.by(by + ['le']), rate(metric)]),

    'greenops-collector.json': g.dashboard(
      cfg,
      'greenops-collector',
      'GreenOps / Collector health',
      'Ingest rate by outcome, batch size, commit latency and rate, HTTP latency by route, scrape duration.',
      c.variables,
      [
        [
          g.stat(
            'Collectors up',
            'Collector targets Prometheus can scrape.',
            'short',
            [g.target(p.fmt('sum(up{%s})', c.raw), instant=true)],
            h=8,
          ),
          g.timeseries(
            'Heartbeats by outcome',
            'Heartbeats received per second: accepted, duplicate (already counted) and rejected.',
            'reqps',
            [g.target(p.fmt('sum by (result) (%s)', rate('greenops_heartbeats_total')), '{{result}}')],
            w=18,
          ),
        ],
        [
          g.timeseries(
            'Group-commit batch size',
            'Heartbeats committed per transaction.',
            'short',
            [
              g.target(quantile(0.5, 'greenops_ingest_batch_size_bucket'), 'p50'),
              g.target(quantile(0.99, 'greenops_ingest_batch_size_bucket'), 'p99'),
            ],
          ),
          g.timeseries(
            'Commit latency',
            p.fmt('Duration of group-commit transactions, per collector. GreenOpsIngestCommitSlow fires when the p99 stays above %s s while there are more than %s commits per second.', [
              p.num(cfg.commitSlowP99Seconds),
              p.num(cfg.commitSlowMinRatePerSecond),
            ]),
            's',
            [
              g.target(quantile(0.5, 'greenops_ingest_commit_duration_seconds_bucket', ['instance']), 'p50 {{instance}}'),
              g.target(quantile(0.99, 'greenops_ingest_commit_duration_seconds_bucket', ['instance']), 'p99 {{instance}}'),
            ],
          ),
        ],
        [
          g.timeseries(
            'Commits per second',
            'Group-commit transactions per second, per collector.',
            'ops',
            [g.target(p.fmt('sum by (instance) (%s)', rate('greenops_ingest_commit_duration_seconds_count')), '{{instance}}')],
          ),
          g.timeseries(
            'Scrape duration',
            'How long Prometheus takes to scrape /metrics.',
            's',
            [g.target(p.fmt('scrape_duration_seconds{%s}', c.raw), '{{instance}}')],
          ),
        ],
        [
          g.timeseries(
            'HTTP latency p99 by route',
            '99th percentile request duration per matched route.',
            's',
            [g.target(quantile(0.99, 'greenops_http_request_duration_seconds_bucket', ['route']), '{{route}}')],
          ),
          g.timeseries(
            'HTTP requests by route and status',
            'Requests per second per matched route and status code.',
            'reqps',
            [g.target(
              p.fmt('sum by (route, status) (%s)', rate('greenops_http_request_duration_seconds_count')),
              '{{route}} {{status}}',
            )],
          ),
        ],
        [
          g.timeseries(
            'Machines by status',
            'Number of machines by current status. Every replica serves the same counts: collapsed with max, not summed.',
            'short',
            [g.target(
              p.fmt('sum by (status) (%s)', p.perGroup(cfg, p.fmt('greenops_machines{%s}', c.raw), ['status'])),
              '{{status}}',
            )],
          ),
          g.panel(
            'table',
            'Collector versions',
            'Version and source revision of each collector process.',
            'none',
            [g.target(p.fmt('max by (instance, version, revision) (greenops_build_info{%s})', c.raw), instant=true, format='table')],
          ) + {
            transformations: [{
              id: 'organize',
              options: { excludeByName: { Time: true, Value: true }, indexByName: { instance: 0, version: 1, revision: 2 } },
            }],
            options: { showHeader: true },
          },
        ],
      ],
    ),
  },
}
