COMMENT ON TABLE usage_reports IS NULL;
DROP TABLE ai_budgets;
DROP TABLE ai_usage;
DROP TABLE ai_virtual_keys;
