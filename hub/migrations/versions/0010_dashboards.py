"""dashboards: facts, totals and change queue

Revision ID: 0010_dashboards
Revises: 0009_telediagnosis
Create Date: 2026-12-06 12:55:27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.fhir.access import patient_data_types

revision = '0010_dashboards'
down_revision = '0009_telediagnosis'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_dash_change',
    sa.Column('change_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('change_pk', name=op.f('pk_hub_dash_change'))
    )
    op.create_table('hub_dash_fact',
    sa.Column('fact_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('moment', sa.BigInteger(), nullable=False),
    sa.Column('institution', sa.String(length=64), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('other', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('value1', sa.Float(), nullable=True),
    sa.Column('value2', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('fact_pk', name=op.f('pk_hub_dash_fact'))
    )
    with op.batch_alter_table('hub_dash_fact', schema=None) as batch_op:
        batch_op.create_index('ix_hub_dash_fact_kind_day', ['kind', 'day', 'institution', 'code'], unique=False)
        batch_op.create_index('ix_hub_dash_fact_kind_other', ['kind', 'other'], unique=False)
        batch_op.create_index('ix_hub_dash_fact_resource', ['resource_type', 'res_id'], unique=False)
    op.create_table('hub_dash_total',
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('institution', sa.String(length=64), nullable=False),
    sa.Column('records', sa.BigInteger(), nullable=False),
    sa.Column('coded', sa.BigInteger(), nullable=False),
    sa.Column('standard', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('source', 'institution', name=op.f('pk_hub_dash_total'))
    )
    # the data already stored is read into facts like new writes (by the API's worker or `hub dashboards refresh`)
    resource = sa.table('hub_resource', sa.column('resource_type'), sa.column('res_id'), sa.column('deleted'))
    change = sa.table('hub_dash_change', sa.column('resource_type'), sa.column('res_id'))
    op.execute(change.insert().from_select(['resource_type', 'res_id'], sa.select(resource.c.resource_type, resource.c.res_id)
               .where(resource.c.deleted.is_(False), resource.c.resource_type.in_(sorted(patient_data_types())))))


def downgrade() -> None:
    op.drop_table('hub_dash_total')
    with op.batch_alter_table('hub_dash_fact', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_dash_fact_resource')
        batch_op.drop_index('ix_hub_dash_fact_kind_other')
        batch_op.drop_index('ix_hub_dash_fact_kind_day')

    op.drop_table('hub_dash_fact')
    op.drop_table('hub_dash_change')
