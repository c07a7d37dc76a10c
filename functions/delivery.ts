// Placeholder: the delivery handler lands with the delivery work (shared/delivery).
export const handler = async (): Promise<{ batchItemFailures: { itemIdentifier: string }[] }> => ({
  batchItemFailures: [],
});
