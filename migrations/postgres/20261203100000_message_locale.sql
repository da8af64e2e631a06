-- The locale a code message was sent for (null: none asked for), so that an automatic fallback
-- by another channel speaks the same language.
alter table message add column locale text;
