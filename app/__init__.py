"""ClinLens desktop application: Qt widgets only. Models are reached through ``engine``."""
