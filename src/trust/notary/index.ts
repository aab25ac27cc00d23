export { HttpMetadataFetcher, type MetadataFetcher } from "./fetcher.js";
export { DOCKER_ROLES, NotarySource, type NotarySourceOptions } from "./source.js";
