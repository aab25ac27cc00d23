/**
 * A GUN as given on the command line: `<registry host[:port]>/<repository>`, the name Docker
 * Content Trust signs under (docker.io/library/alpine) and the proxy queries (`${registry}/${repository}`).
 */
import { UsageError } from "../errors.js";
import { isValidRegistryHost } from "../oci/reference.js";
import { isValidGun } from "../trust/notary/fetcher.js";

export interface Gun {
  gun: string;
  registry: string;
  repository: string;
}

export function parseGun(text: string | undefined): Gun {
  if (text === undefined)
    throw new UsageError("expected a GUN (<registry>/<repository>, e.g. docker.io/acme/app)");
  const slash = text.indexOf("/");
  const registry = text.slice(0, slash);
  if (slash <= 0 || !isValidGun(text) || !isValidRegistryHost(registry) || text !== text.toLowerCase()) {
    throw new UsageError(
      `'${text}' is not a GUN: <registry host[:port]>/<repository>, lower case, e.g. docker.io/acme/app`,
    );
  }
  return { gun: text, registry, repository: text.slice(slash + 1) };
}
