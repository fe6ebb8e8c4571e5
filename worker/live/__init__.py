"""Live accuracy: realised outcomes from the backend's `orders` table joined with the stored predictions,
scored per model version over rolling windows, exported to Prometheus and logged to MLflow (docs/operations.md)."""
