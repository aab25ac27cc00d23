/**
 * The kubelet's side of an image pull: CRI `runtime.v1.ImageService` over containerd's gRPC socket
 * with @grpc/grpc-js, from the minimal proto in test/fixtures/cri/api.proto (field numbers as in
 * kubernetes/cri-api). The CRI plugin keeps its images in containerd's "k8s.io" namespace.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO = fileURLToPath(new URL("../fixtures/cri/api.proto", import.meta.url));

export interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: string;
}

/** A failed call as the kubelet sees it: the gRPC status code and its message (the pod event text). */
export class CriError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
interface ImageServiceClient extends grpc.Client {
  PullImage(req: unknown, opts: grpc.CallOptions, cb: Callback<{ imageRef: string }>): void;
  ImageStatus(req: unknown, opts: grpc.CallOptions, cb: Callback<{ image: CriImage | null }>): void;
}

export class CriImageService {
  readonly #client: ImageServiceClient;
  constructor(socket: string) {
    const def = protoLoader.loadSync(PROTO, { longs: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      runtime: {
        v1: { ImageService: new (addr: string, creds: grpc.ChannelCredentials) => ImageServiceClient };
      };
    };
    this.#client = new pkg.runtime.v1.ImageService(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  #call<T>(method: "PullImage" | "ImageStatus", req: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + 60_000);
      (this.#client[method] as (r: unknown, o: grpc.CallOptions, cb: Callback<T>) => void).call(
        this.#client,
        req,
        { deadline },
        (err, res) => (err ? reject(new CriError(err.code, err.details || err.message)) : resolve(res)),
      );
    });
  }

  /** PullImage as the kubelet sends it: the image reference, no credentials; returns image_ref. */
  async pullImage(image: string): Promise<string> {
    const res = await this.#call<{ imageRef: string }>("PullImage", { image: { image } });
    return res.imageRef;
  }

  /** ImageStatus: undefined when the runtime does not have the image. */
  async imageStatus(image: string): Promise<CriImage | undefined> {
    const res = await this.#call<{ image: CriImage | null }>("ImageStatus", { image: { image } });
    return res.image ?? undefined;
  }

  close(): void {
    this.#client.close();
  }
}
