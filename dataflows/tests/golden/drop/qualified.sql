DROP VIEW public.by_customer;
