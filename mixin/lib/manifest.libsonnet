// JSON and YAML text for the checked-in files. jsonnet 0.18's std.manifestJsonEx and
// std.manifestYamlDoc escape strings one character at a time in jsonnet (minutes for this
// pack on a busy machine) and sort every key; these let the interpreter escape strings and put
// rule keys in reading order.

// A JSON string literal. std.toString of a non-string value is manifested natively (fast);
// the one-element array around the string is cut off again.
local quote(s) =
  local text = std.toString([s]);
  std.substr(text, 1, std.length(text) - 2);

// Keys in this order first (where present), then the rest alphabetically.
local keyOrder = [
  'name',
  'interval',
  'alert',
  'record',
  'expr',
  'for',
  'labels',
  'annotations',
  'summary',
  'description',
  'runbook_url',
  'rules',
];
local keys(o) =
  local fields = std.objectFields(o);
  [k for k in keyOrder if std.objectHas(o, k)]
  + [k for k in fields if !std.member(keyOrder, k)];

// std.all arrived after jsonnet 0.18.
local every(set, s) = std.length([c for c in std.stringChars(s) if !std.objectHas(set, c)]) == 0;

local plainChars = {
  [c]: true
  for c in std.stringChars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:')
};
local numericChars = { [c]: true for c in std.stringChars('0123456789.+-eE_') };

// A string YAML reads back unchanged without quotes: a letter first, then letters, digits and
// `_-./:` (no space, so no ": " or " #"), not a word YAML 1.1 takes for a boolean or null.
// (std.findSubstr is avoided here and below: it is slower still than std.format in 0.18.)
local plain(s) =
  std.length(s) > 0
  && std.length(s) <= 100
  && every(plainChars, s)
  && !every(numericChars, s)
  && !std.objectHas(numericChars, s[0])
  && s[std.length(s) - 1] != ':'
  && !std.member(['true', 'false', 'yes', 'no', 'on', 'off', 'null', 'y', 'n'], std.asciiLower(s));

local scalar(v) =
  if std.isString(v) then (if plain(v) then v else quote(v))
  else std.manifestJson(v);

{
  // JSON with two-space indentation, keys sorted, `{}` / `[]` for empty values.
  json(value, indent='')::
    local inner = indent + '  ';
    if std.isObject(value) then
      if std.length(value) == 0 then '{}'
      else '{\n'
           + std.join(',\n', [inner + quote(k) + ': ' + $.json(value[k], inner) for k in std.objectFields(value)])
           + '\n' + indent + '}'
    else if std.isArray(value) then
      if std.length(value) == 0 then '[]'
      else '[\n' + std.join(',\n', [inner + $.json(v, inner) for v in value]) + '\n' + indent + ']'
    else if std.isString(value) then quote(value)
    else std.manifestJson(value),

  // A YAML document: block style, lists indented under their key, multi-line strings as `|`
  // block scalars.
  yaml(value)::
    local block(s, indent) =
      local body = if std.endsWith(s, '\n') then std.substr(s, 0, std.length(s) - 1) else s;
      (if std.endsWith(s, '\n') then '|' else '|-') + '\n'
      + std.join('\n', [if line == '' then '' else indent + line for line in std.split(body, '\n')]);
    local node(v, indent) =
      if std.isObject(v) && std.length(v) > 0 then mapping(v, indent)
      else if std.isArray(v) && std.length(v) > 0 then sequence(v, indent)
      else if std.isObject(v) then '{}'
      else if std.isArray(v) then '[]'
      else if std.isString(v) && std.length(std.split(v, '\n')) > 1 then block(v, indent)
      else scalar(v),
          // The first line carries no indentation: it follows a key or "- ".
          mapping(o, indent) = std.join('\n' + indent, [
      local v = o[k];
      if (std.isObject(v) || std.isArray(v)) && std.length(v) > 0
      then k + ':\n' + indent + '  ' + node(v, indent + '  ')
      else k + ': ' + node(v, indent + '  ')
      for k in keys(o)
    ]),
          sequence(a, indent) = std.join('\n' + indent, ['- ' + node(v, indent + '  ') for v in a]);
    node(value, '') + '\n',
}
