import { UsageError } from "../errors.js";

/** Placeholder until the proxy lands (issue 2). */
export async function run(_argv: string[]): Promise<number> {
  throw new UsageError("serve is not implemented yet");
}
