// Placeholder: the poller handler lands with the ingestion work (shared/ingest).
export const handler = async (): Promise<void> => {};
