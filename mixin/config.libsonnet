// Everything a deployment may want to change. Override with
//   (import 'mixin.libsonnet') + { _config+:: { selector: 'job="greenops-prod"' } }
// Derived values refer to `self`, so overriding an input updates what depends on it.
local durationString = (import 'lib/promql.libsonnet').durationString;

{
  _config+:: {
    // Label matchers that select the GreenOps collector targets (the scrape job). Every rule,
    // alert and dashboard query is scoped by it. `greenopsSelector` is what the mixin reads;
    // it defaults to `selector`, so either name can be overridden.
    selector: 'job="greenops"',
    greenopsSelector: self.selector,

    // Optional label that tells several Prometheus-federated installations apart (for
    // example "cluster"). Empty: off. When set, recording rules and alerts keep the label and
    // the dashboards get a variable for it.
    clusterLabel: '',

    // Agents send one heartbeat per interval, and the per-machine and group counters move
    // only then. A rate() over fewer than ~4 heartbeats aliases (a constant 65 W reads 0, 87,
    // 0, 87 W), so every rate over them uses at least rateWindowSeconds.
    heartbeatIntervalSeconds: 60,
    rateWindowSeconds: 4 * self.heartbeatIntervalSeconds,
    rateWindow: durationString(self.rateWindowSeconds),  // "4m" by default
    // Window for rates over the collector's own process metrics (they move continuously).
    collectorRateWindow: '5m',

    // Alert thresholds (see alerts/README.md).
    ingestRejectedRatioThreshold: 0.05,  // GreenOpsIngestRejectionsHigh: share of heartbeats
    commitSlowP99Seconds: 0.5,  // GreenOpsIngestCommitSlow: 99th percentile commit duration
    commitSlowMinRatePerSecond: 0.1,  // ... only with at least this many commits per second
    scrapeSlowSeconds: 10,  // GreenOpsMetricsScrapeSlow
    machineIdleTooLongSeconds: 4 * 3600,  // GreenOpsMachineIdleTooLong
    nightStartHourUTC: 22,  // GreenOpsMachinesOnOvernight: the night window [start, end)
    nightEndHourUTC: 5,
    overnightIdleMachinesPerSite: 5,  // ... more than this many idle machines at one site
    fleetIdleRatioThreshold: 0.5,  // GreenOpsFleetIdleRatioHigh: idle share over 1 h
    idleEnergyBudgetKWhPerSiteDay: 50,  // GreenOpsIdleEnergyBudgetExceeded
    agentsStoppedWindow: '15m',  // GreenOpsAgentsStopped: machines newly offline within ...
    agentsStoppedMinMachines: 5,  // ... more than this many
    agentsStoppedMinRatio: 0.2,  // ... and more than this share of the site

    // Where the runbooks are published; %s is the lower-case alert name (the anchor).
    runbookURLPattern: 'https://github.com/greenops/greenops/blob/main/alerts/runbooks.md#%s',

    // Dashboards.
    dashboardTags: ['greenops'],
    dashboardRefresh: '1m',
    // Money is shown in the currency of each series' `currency` label: series whose currency
    // is in this list get Grafana's unit for it, others the default currency's unit.
    defaultCurrency: 'USD',
    currencies: ['USD', 'EUR', 'GBP', 'CHF', 'SEK', 'NOK', 'DKK', 'PLN', 'CZK', 'JPY', 'INR', 'BRL', 'ZAR'],
  },
}
