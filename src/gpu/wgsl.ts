/**
 * The only WGSL "templating": `#if NAME` / `#else` / `#endif` lines, nestable, switched by booleans.
 * Structural variants otherwise use WGSL `override` constants.
 */
export function preprocess(source: string, defines: Record<string, boolean>): string {
  const out: string[] = [];
  const stack: Array<{ on: boolean; parentOn: boolean }> = [];
  let on = true;
  for (const line of source.split('\n')) {
    const t = line.trim();
    if (t.startsWith('#if ')) {
      const name = t.slice(4).trim();
      const neg = name.startsWith('!');
      const val = Boolean(defines[neg ? name.slice(1) : name]) !== neg;
      stack.push({ on: val, parentOn: on });
      on = on && val;
    } else if (t === '#else') {
      const top = stack[stack.length - 1];
      if (!top) throw new Error('wgsl: #else without #if');
      top.on = !top.on;
      on = top.parentOn && top.on;
    } else if (t === '#endif') {
      const top = stack.pop();
      if (!top) throw new Error('wgsl: #endif without #if');
      on = top.parentOn;
    } else if (on) out.push(line);
  }
  if (stack.length) throw new Error('wgsl: unterminated #if');
  return out.join('\n');
}
