/**
 * Tag globs for policy exceptions: `*` any run of characters, `?` exactly one; everything else is
 * literal. The character set is the OCI tag grammar (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) plus the
 * two wildcards, so no regular-expression metacharacter but `.` can reach the compiled RegExp.
 */
const TAG_GLOB = /^[A-Za-z0-9_.*?-]{1,128}$/;

export function isValidTagGlob(glob: string): boolean {
  return TAG_GLOB.test(glob);
}

export function compileTagGlob(glob: string): RegExp {
  if (!isValidTagGlob(glob)) throw new Error(`invalid tag glob "${glob}"`);
  const body = glob.replace(/\./g, "\\.").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}
