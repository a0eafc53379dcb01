// Just enough Grafana dashboard JSON for the GreenOps dashboards: a dashboard is variables and
// rows of panel definitions; ids, grid positions and query refIds are worked out here.
local datasource = { type: 'prometheus', uid: '${datasource}' };

// Currencies that Grafana has a unit for ("currencyEUR" shows €); others get the code as suffix.
local grafanaCurrencies = [
  'USD',
  'GBP',
  'EUR',
  'JPY',
  'RUB',
  'UAH',
  'BRL',
  'DKK',
  'ISK',
  'NOK',
  'SEK',
  'CZK',
  'CHF',
  'PLN',
  'ZAR',
  'INR',
  'KRW',
];

{
  datasource: datasource,

  currencyUnit(code)::
    if std.member(grafanaCurrencies, code) then 'currency' + code else 'suffix:' + code,

  // Field overrides giving each money series the unit of its currency. The series' display
  // name must end in the currency code ("USD", "hq (EUR)"): use a legend like "{{currency}}".
  moneyOverrides(currencies):: [
    {
      matcher: { id: 'byRegexp', options: '(.*[ (])?' + code + '\\)?' },
      properties: [{ id: 'unit', value: $.currencyUnit(code) }],
    }
    for code in currencies
  ],

  // A PromQL query. `instant` for stats, tables and bar gauges; `interval` sets the step.
  target(expr, legend='', instant=false, format='time_series', interval=null):: {
    datasource: datasource,
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    format: format,
  } + (if interval == null then {} else { interval: interval }),

  // A panel definition: what a dashboard row holds. Everything but `type`, `title`, `unit`
  // and `targets` is optional.
  //   w, h:        width (of 24) and height in grid units
  //   decimals, min, max, custom (fieldConfig.defaults.custom), links (data links),
  //   overrides, options, transformations
  panel(type, title, description, unit, targets, w=12, h=8):: {
    type: type,
    title: title,
    description: description,
    unit: unit,
    targets: targets,
    w: w,
    h: h,
  },

  stat(title, description, unit, targets, w=6, h=4)::
    $.panel('stat', title, description, unit, targets, w, h) + {
      options: {
        reduceOptions: { calcs: ['lastNotNull'], values: false },
        colorMode: 'none',
        graphMode: 'none',
      },
    },

  timeseries(title, description, unit, targets, w=12, h=8)::
    $.panel('timeseries', title, description, unit, targets, w, h) + {
      options: { legend: { showLegend: true, displayMode: 'list', placement: 'bottom' } },
    },

  // Grafana panel JSON for a definition at (x, y).
  local render(def, id, x, y) = {
    id: id,
    type: def.type,
    title: def.title,
    description: def.description,
    datasource: datasource,
    gridPos: { x: x, y: y, w: def.w, h: def.h },
    targets: [
      def.targets[i] { refId: std.char(std.codepoint('A') + i) }
      for i in std.range(0, std.length(def.targets) - 1)
    ],
    fieldConfig: {
      defaults: { unit: def.unit }
                + (if std.objectHas(def, 'decimals') then { decimals: def.decimals } else {})
                + (if std.objectHas(def, 'min') then { min: def.min } else {})
                + (if std.objectHas(def, 'max') then { max: def.max } else {})
                + (if std.objectHas(def, 'custom') then { custom: def.custom } else {})
                + (if std.objectHas(def, 'links') then { links: def.links } else {}),
      overrides: std.get(def, 'overrides', []),
    },
    options: std.get(def, 'options', {}),
  } + (if std.objectHas(def, 'transformations') then { transformations: def.transformations } else {}),

  // Rows of panel definitions laid out left to right, each row below the tallest panel of the
  // one before; ids are 1, 2, ... in reading order.
  layout(rows)::
    local heights = [std.foldl(function(m, d) std.max(m, d.h), row, 0) for row in rows];
    local tops = [std.foldl(function(s, h) s + h, heights[0:i], 0) for i in std.range(0, std.length(rows) - 1)];
    local lefts(row) = [std.foldl(function(s, d) s + d.w, row[0:i], 0) for i in std.range(0, std.length(row) - 1)];
    local counts = [std.length(row) for row in rows];
    local firstId(r) = 1 + std.foldl(function(s, n) s + n, counts[0:r], 0);
    std.flattenArrays([
      [
        render(rows[r][i], firstId(r) + i, lefts(rows[r])[i], tops[r])
        for i in std.range(0, std.length(rows[r]) - 1)
      ]
      for r in std.range(0, std.length(rows) - 1)
    ]),

  datasourceVariable:: {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    query: 'prometheus',
    current: {},
    hide: 0,
    refresh: 1,
    regex: '',
    options: [],
  },

  // A variable filled by a query (label_values(...), query_result(...)).
  queryVariable(name, label, query, multi=true, includeAll=true, regex='', hide=0):: {
    name: name,
    label: label,
    type: 'query',
    datasource: datasource,
    query: { query: query, refId: name },
    definition: query,
    refresh: 2,  // on time range change
    multi: multi,
    includeAll: includeAll,
    allValue: if includeAll then '.*' else null,
    regex: regex,
    current: {},
    options: [],
    sort: 1,
    hide: hide,
  },

  dashboard(cfg, uid, title, description, variables, rows):: {
    uid: uid,
    title: title,
    description: description,
    tags: cfg.dashboardTags,
    schemaVersion: 39,
    version: 1,
    editable: true,
    graphTooltip: 1,
    time: { from: 'now-24h', to: 'now' },
    refresh: cfg.dashboardRefresh,
    timezone: '',
    templating: { list: [$.datasourceVariable] + variables },
    annotations: { list: [] },
    links: [
      {
        type: 'dashboards',
        tags: cfg.dashboardTags,
        asDropdown: true,
        title: 'GreenOps',
        includeVars: true,
        keepTime: true,
      },
    ],
    panels: $.layout(rows),
  },
}
