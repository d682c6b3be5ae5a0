// @generated shape of `diesel print-schema` for migrations/; keep in sync
// with the SQL (the integration tests run every query against it).

diesel::table! {
    api_keys (id) {
        id -> Int8,
        customer_id -> Int8,
        name -> Text,
        prefix -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    credit_ledger_entries (id) {
        id -> Int8,
        customer_id -> Int8,
        amount -> Int8,
        kind -> Text,
        reference -> Nullable<Text>,
        idempotency_key -> Text,
        balance_after -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    customers (id) {
        id -> Int8,
        email -> Text,
        name -> Text,
        source -> Text,
        plan -> Text,
        status -> Text,
        credit_balance -> Int8,
        stripe_customer_id -> Nullable<Text>,
        subscription_status -> Nullable<Text>,
        has_payment_method -> Bool,
        current_period_end -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        stripe_subscription_id -> Nullable<Text>,
        subscription_updated_at -> Nullable<Timestamptz>,
        payment_failed_at -> Nullable<Timestamptz>,
        pro_credits_period_end -> Nullable<Timestamptz>,
        disputed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    fix_write_offs (fix_id) {
        fix_id -> Int8,
        customer_id -> Int8,
        reason -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    fixes (id) {
        id -> Int8,
        customer_id -> Int8,
        repository -> Text,
        fix_key -> Text,
        issue_number -> Nullable<Int8>,
        pr_number -> Nullable<Int8>,
        pr_url -> Nullable<Text>,
        pr_title -> Nullable<Text>,
        issue_title -> Nullable<Text>,
        issue_url -> Nullable<Text>,
        fix_commit -> Nullable<Text>,
        metadata -> Nullable<Jsonb>,
        billing_status -> Text,
        ledger_entry_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        api_key_id -> Nullable<Int8>,
    }
}

diesel::table! {
    phase_records (id) {
        id -> Int8,
        customer_id -> Int8,
        repository -> Text,
        commit_sha -> Text,
        phase -> Text,
        issue_number -> Int8,
        data -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    usage_reports (id) {
        id -> Int8,
        customer_id -> Int8,
        provider -> Text,
        tokens_used -> Int8,
        request_count -> Int8,
        job_id -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> customers (customer_id));
diesel::joinable!(credit_ledger_entries -> customers (customer_id));
diesel::joinable!(fix_write_offs -> customers (customer_id));
diesel::joinable!(fix_write_offs -> fixes (fix_id));
diesel::joinable!(fixes -> customers (customer_id));
diesel::joinable!(phase_records -> customers (customer_id));
diesel::joinable!(usage_reports -> customers (customer_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    credit_ledger_entries,
    customers,
    fix_write_offs,
    fixes,
    phase_records,
    usage_reports,
);

diesel::table! {
    email_outbox (id) {
        id -> Int8,
        customer_id -> Nullable<Int8>,
        kind -> Text,
        to_address -> Text,
        subject -> Nullable<Text>,
        text_body -> Nullable<Text>,
        html_body -> Nullable<Text>,
        idempotency_key -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        notification -> Nullable<Jsonb>,
    }
}

diesel::joinable!(email_outbox -> customers (customer_id));
diesel::allow_tables_to_appear_in_same_query!(email_outbox, customers);

diesel::table! {
    jobs (id) {
        id -> Int8,
        kind -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        max_attempts -> Int4,
        run_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        dedupe_key -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        ordering_key -> Nullable<Text>,
        held -> Bool,
    }
}

diesel::table! {
    stripe_events (id) {
        id -> Text,
        #[sql_name = "type"]
        type_ -> Text,
        created -> Timestamptz,
        payload -> Jsonb,
        received_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        status -> Text,
    }
}

diesel::table! {
    stripe_payment_methods (id) {
        id -> Text,
        customer_id -> Int8,
        attached -> Bool,
        last_event_at -> Timestamptz,
        updated_at -> Timestamptz,
        brand -> Nullable<Text>,
        last4 -> Nullable<Text>,
        exp_month -> Nullable<Int4>,
        exp_year -> Nullable<Int4>,
        is_default -> Bool,
    }
}

diesel::joinable!(stripe_payment_methods -> customers (customer_id));
diesel::allow_tables_to_appear_in_same_query!(stripe_payment_methods, customers);

diesel::table! {
    rate_limit_counters (bucket) {
        bucket -> Text,
        window_start -> Timestamptz,
        expires_at -> Timestamptz,
        hits -> Int8,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        customer_id -> Nullable<Int8>,
        email -> Text,
        password_hash -> Nullable<Text>,
        role -> Text,
        email_confirmed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deactivated_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    user_tokens (id) {
        id -> Int8,
        user_id -> Int8,
        purpose -> Text,
        token_hash -> Bytea,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        data -> Jsonb,
        expiry_date -> Timestamptz,
        user_id -> Nullable<Int8>,
    }
}

diesel::table! {
    login_attempts (id) {
        id -> Int8,
        email_lower -> Text,
        ip -> Nullable<Text>,
        at -> Timestamptz,
    }
}

diesel::joinable!(users -> customers (customer_id));
diesel::joinable!(user_tokens -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, customers, user_tokens, sessions);

diesel::table! {
    customer_github_accounts (customer_id) {
        customer_id -> Int8,
        github_account_id -> Int8,
        github_account_login -> Text,
        github_account_type -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        granted_through -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    github_deliveries (delivery_id) {
        delivery_id -> Text,
        event -> Text,
        action -> Nullable<Text>,
        account_id -> Nullable<Int8>,
        account_login -> Nullable<Text>,
        customer_id -> Nullable<Int8>,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        error -> Nullable<Text>,
        received_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    github_pending_changes (id) {
        id -> Int8,
        customer_id -> Int8,
        delivery_id -> Text,
        marketplace_plan_id -> Int8,
        plan -> Text,
        effective_at -> Timestamptz,
        status -> Text,
        created_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(customer_github_accounts -> customers (customer_id));
diesel::joinable!(github_deliveries -> customers (customer_id));
diesel::joinable!(github_pending_changes -> customers (customer_id));
diesel::joinable!(github_pending_changes -> github_deliveries (delivery_id));
diesel::allow_tables_to_appear_in_same_query!(
    customer_github_accounts,
    github_deliveries,
    github_pending_changes,
    customers,
);

// --- Admin console (migration 000009) -------------------------------------

diesel::table! {
    feature_flags (key) {
        key -> Text,
        enabled -> Bool,
        updated_by -> Nullable<Int8>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    admin_audit_log (id) {
        id -> Int8,
        actor_user_id -> Nullable<Int8>,
        actor_email -> Text,
        action -> Text,
        target_type -> Text,
        target_id -> Nullable<Text>,
        customer_id -> Nullable<Int8>,
        reason -> Nullable<Text>,
        before -> Nullable<Jsonb>,
        after -> Nullable<Jsonb>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    signup_requests (id) {
        id -> Int8,
        email -> Text,
        name -> Text,
        source -> Text,
        channel -> Text,
        status -> Text,
        customer_id -> Nullable<Int8>,
        decided_by -> Nullable<Int8>,
        decided_at -> Nullable<Timestamptz>,
        reason -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

// migrations/2026-11-21-000008_billing_stripe
diesel::table! {
    charges (id) {
        id -> Int8,
        customer_id -> Int8,
        fix_id -> Int8,
        kind -> Text,
        amount_cents -> Int8,
        currency -> Text,
        status -> Text,
        stripe_payment_intent_id -> Nullable<Text>,
        stripe_invoice_item_id -> Nullable<Text>,
        failure_message -> Nullable<Text>,
        attempts -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        stripe_invoice_id -> Nullable<Text>,
        processing_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    payment_method_consents (id) {
        id -> Int8,
        customer_id -> Int8,
        user_id -> Nullable<Int8>,
        payment_method_id -> Text,
        setup_intent_id -> Text,
        consent_text -> Text,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    stripe_disputes (id) {
        id -> Text,
        customer_id -> Int8,
        charge_id -> Nullable<Int8>,
        stripe_charge_id -> Text,
        amount_cents -> Int8,
        currency -> Text,
        reason -> Text,
        status -> Text,
        opened_at -> Timestamptz,
        closed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stripe_subscriptions (id) {
        id -> Text,
        customer_id -> Int8,
        cancel_at_period_end -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    reconciliation_findings (id) {
        id -> Int8,
        run_id -> Int8,
        kind -> Text,
        customer_id -> Nullable<Int8>,
        subject -> Text,
        details -> Jsonb,
        repairable -> Bool,
        resolved_at -> Nullable<Timestamptz>,
        resolved_by -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    reconciliation_runs (id) {
        id -> Int8,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        findings -> Int4,
    }
}

diesel::joinable!(charges -> customers (customer_id));
diesel::joinable!(charges -> fixes (fix_id));
diesel::allow_tables_to_appear_in_same_query!(charges, customers);
diesel::allow_tables_to_appear_in_same_query!(charges, fixes);
diesel::joinable!(payment_method_consents -> customers (customer_id));
diesel::joinable!(stripe_disputes -> charges (charge_id));
diesel::joinable!(stripe_disputes -> customers (customer_id));
diesel::joinable!(stripe_subscriptions -> customers (customer_id));
diesel::allow_tables_to_appear_in_same_query!(stripe_subscriptions, customers);
diesel::joinable!(reconciliation_findings -> reconciliation_runs (run_id));

diesel::table! {
    ai_virtual_keys (id) {
        id -> Int8,
        customer_id -> Int8,
        api_key_id -> Int8,
        provider -> Text,
        token_hash -> Bytea,
        prefix -> Text,
        github_job -> Nullable<Text>,
        github_run -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    ai_usage (id) {
        id -> Int8,
        customer_id -> Int8,
        api_key_id -> Int8,
        virtual_key_id -> Int8,
        provider -> Text,
        model -> Text,
        input_tokens -> Int8,
        output_tokens -> Int8,
        status -> Int2,
        streamed -> Bool,
        completed -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ai_budgets (customer_id) {
        customer_id -> Int8,
        max_concurrent -> Nullable<Int4>,
        daily_tokens -> Nullable<Int8>,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(ai_virtual_keys -> customers (customer_id));
diesel::joinable!(ai_virtual_keys -> api_keys (api_key_id));
diesel::joinable!(ai_usage -> ai_virtual_keys (virtual_key_id));
diesel::joinable!(ai_budgets -> customers (customer_id));
diesel::allow_tables_to_appear_in_same_query!(ai_virtual_keys, customers);
diesel::allow_tables_to_appear_in_same_query!(ai_virtual_keys, api_keys);
diesel::allow_tables_to_appear_in_same_query!(ai_virtual_keys, ai_budgets);
diesel::allow_tables_to_appear_in_same_query!(ai_budgets, customers);
diesel::allow_tables_to_appear_in_same_query!(ai_budgets, api_keys);
diesel::allow_tables_to_appear_in_same_query!(ai_usage, customers);
diesel::allow_tables_to_appear_in_same_query!(ai_usage, api_keys);
diesel::allow_tables_to_appear_in_same_query!(ai_usage, ai_virtual_keys);

diesel::table! {
    admin_totp (user_id) {
        user_id -> Int8,
        secret -> Bytea,
        confirmed_at -> Nullable<Timestamptz>,
        last_used_step -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    admin_recovery_codes (id) {
        id -> Int8,
        user_id -> Int8,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(admin_totp -> users (user_id));
diesel::joinable!(admin_recovery_codes -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(admin_totp, users);
diesel::allow_tables_to_appear_in_same_query!(admin_recovery_codes, users);
