"""ClinLens engine: imaging, annotations, grounding, models. Plain Python, numpy and torch; never Qt."""
