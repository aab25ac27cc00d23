/**
 * tuf-js's typed failures -> our TrustError codes. Callers branch on the code; the message keeps
 * tuf-js's own words for the audit log.
 */
import { ValueError as ModelValueError } from "@tufjs/models";
import { LengthOrHashMismatchError, UnsignedMetadataError } from "@tufjs/models/dist/error.js";
import {
  BadVersionError,
  DownloadError,
  DownloadLengthMismatchError,
  ExpiredMetadataError,
  RepositoryError,
  RuntimeError,
} from "tuf-js/dist/error.js";
import { TrustError, type TrustErrorCode } from "../errors.js";
import type { UpdaterFetcher } from "./transport.js";

export function toTrustError(
  err: unknown,
  repository: string,
  fetcher: UpdaterFetcher | undefined,
  action: string,
): TrustError {
  if (err instanceof TrustError) return err;
  const code = classify(err, fetcher);
  const detail = err instanceof Error ? err.message : String(err);
  return new TrustError(code, repository, undefined, `TUF ${action} failed (${code}): ${detail}`, {
    cause: err,
  });
}

function classify(err: unknown, fetcher: UpdaterFetcher | undefined): TrustErrorCode {
  // Order matters: the subclasses come before their parents.
  if (err instanceof DownloadLengthMismatchError) return "METADATA_INVALID";
  if (err instanceof DownloadError) return "TRUST_UNAVAILABLE";
  // EqualVersionError is a BadVersionError; the Updater swallows it where it is benign (an
  // unchanged timestamp), so one that reaches us is a real rollback or version mismatch.
  if (err instanceof BadVersionError) return "ROLLBACK";
  if (err instanceof ExpiredMetadataError) return "EXPIRED";
  if (err instanceof UnsignedMetadataError) return "SIGNATURE_INVALID";
  if (err instanceof LengthOrHashMismatchError) return "HASH_MISMATCH";
  if (err instanceof RuntimeError) {
    // tuf-js 5 rethrows snapshot and targets failures as RuntimeError(`... ${error}`) without a
    // cause. It stops at the first failure, so if the last download failed, that is the cause;
    // otherwise the bytes downloaded last failed verification (type lost: METADATA_INVALID).
    return fetcher?.lastDownloadFailed ? "TRUST_UNAVAILABLE" : "METADATA_INVALID";
  }
  if (err instanceof RepositoryError || err instanceof ModelValueError || err instanceof SyntaxError) {
    return "METADATA_INVALID";
  }
  if (err instanceof TypeError) return "METADATA_INVALID";
  // Anything else (a full disk while persisting, ...) means trust could not be established now.
  return "TRUST_UNAVAILABLE";
}
