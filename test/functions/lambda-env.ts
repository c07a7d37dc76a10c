/**
 * Sets a Lambda function's environment for a test file and restores exactly what was there before
 * (handlers read process.env once, at module load, through shared/runtime/env.ts).
 */
export function setLambdaEnv(values: Record<string, string>): () => void {
  const saved = new Map(Object.keys(values).map((k) => [k, process.env[k]]));
  Object.assign(process.env, values);
  return () => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}
