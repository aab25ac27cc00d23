/**
 * The hono middleware in front of every OCI route when `clients:` is configured (src/access/gate.ts
 * says who is admitted). A client that is not admitted gets 401 UNAUTHORIZED with
 * `WWW-Authenticate: Basic realm="trustgate"`, `/v2/` included: that is where docker, containerd
 * and skopeo discover that a registry wants credentials (distribution-spec "Determining support";
 * distribution's htpasswd auth answers the same challenge). They then retry with Basic
 * credentials.
 *
 * The access line says who was admitted (`client`, `clientAuth`), or why not (`clientRefused`);
 * the header, the password and the token are never logged, and the client's Authorization header
 * is never forwarded upstream (the upstream client builds its own).
 */
import type { IncomingMessage } from "node:http";
import type { MiddlewareHandler } from "hono";
import { CHALLENGE, type ClientAccess, TooManyCredentialChecks } from "../access/gate.js";
import { OciCode, OciError } from "../oci/errors.js";
import type { AppEnv } from "./context.js";

export function clientAccessMiddleware(access: ClientAccess): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const incoming = c.env?.incoming as IncomingMessage | undefined;
    const authorization = incoming ? incoming.headers.authorization : c.req.header("authorization");
    let result: Awaited<ReturnType<ClientAccess["authenticate"]>>;
    try {
      result = await access.authenticate(authorization, incoming?.socket);
    } catch (err) {
      if (err instanceof TooManyCredentialChecks)
        throw new OciError(OciCode.TOOMANYREQUESTS, {
          message: err.message,
          headers: { "retry-after": "1" },
          cause: err,
        });
      throw err;
    }
    const requestLog = c.get("requestLog");
    if (!result.ok) {
      requestLog.clientRefused = result.problem;
      // One answer for every reason: a client learns nothing about which user names exist.
      throw new OciError(OciCode.UNAUTHORIZED, {
        message: "authentication required: send the credentials trustgate's operator gave you",
        headers: { "www-authenticate": CHALLENGE },
      });
    }
    requestLog.client = result.identity.name;
    requestLog.clientAuth = result.identity.via;
    await next();
  };
}
